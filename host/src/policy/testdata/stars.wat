;; world: prioritizer
;; A well-behaved prioritizer: score = stars (0 when unknown) + BONUS.
;; repo-view is 144 bytes; `stars: option<u32>` has its flag at offset 36, its value at 40.
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
        (i32.store8 (local.get $dst) (i32.const 0))
        (f64.store offset=8 (local.get $dst)
          (f64.add
            (f64.const 0 (; BONUS ;))
            (if (result f64) (i32.load8_u offset=36 (local.get $src))
              (then (f64.convert_i32_u (i32.load offset=40 (local.get $src))))
              (else (f64.const 0)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (call $return_list (local.get $out) (local.get $n)))
)
