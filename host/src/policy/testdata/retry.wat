;; world: retrier
;; A well-behaved retrier: give up after 3 attempts ("too many attempts"), else retry after
;; DELAY ms. failure = {repo: repo-view (144 bytes), error: string} = 152 bytes;
;; `attempts` is at offset 112 of the repo. retry = 16 bytes: tag, payload at 8.
(module
  ;; @prelude
  (data (i32.const 64) "too many attempts")
  (func (export "clonekeeper:policy/reenqueue@0.2.0#reenqueue")
    (param $now i64) (param $failures i32) (param $n i32) (result i32)
    (local $out i32) (local $i i32) (local $src i32) (local $dst i32)
    (local.set $out (call $list_area (local.get $n) (i32.const 16) (i32.const 8)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $src (i32.add (local.get $failures) (i32.mul (local.get $i) (i32.const 152))))
        (local.set $dst (i32.add (local.get $out) (i32.mul (local.get $i) (i32.const 16))))
        (if (i32.ge_u (i32.load offset=112 (local.get $src)) (i32.const 3))
          (then
            (i32.store8 (local.get $dst) (i32.const 2))
            (i32.store offset=8 (local.get $dst) (i32.const 64))
            (i32.store offset=12 (local.get $dst) (i32.const 17)))
          (else
            (i32.store8 (local.get $dst) (i32.const 1))
            (i64.store offset=8 (local.get $dst) (i64.const 60000 (; DELAY ;)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (call $return_list (local.get $out) (local.get $n)))
)
