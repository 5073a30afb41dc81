;; world: prioritizer
;; A well-behaved prioritizer: lower ids first (score = -id); the repo named in a not-now
;; test (id 2) is deferred.
(module
  ;; @prelude
  (func (export "clonekeeper:policy/prioritize@0.1.0#prioritize")
    (param $now i64) (param $repos i32) (param $n i32) (result i32)
    (local $out i32) (local $i i32) (local $src i32) (local $dst i32)
    (local.set $out (call $list_area (local.get $n) (i32.const 16) (i32.const 8)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $src (i32.add (local.get $repos) (i32.mul (local.get $i) (i32.const 144))))
        (local.set $dst (i32.add (local.get $out) (i32.mul (local.get $i) (i32.const 16))))
        (if (i64.eq (i64.load (local.get $src)) (i64.const 2))
          (then (i32.store8 (local.get $dst) (i32.const 1)))
          (else
            (i32.store8 (local.get $dst) (i32.const 0))
            (f64.store offset=8 (local.get $dst) (f64.neg (f64.convert_i64_s (i64.load (local.get $src)))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (call $return_list (local.get $out) (local.get $n)))
)
