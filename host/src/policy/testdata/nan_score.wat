;; world: prioritizer
;; Hostile: prioritize answers NaN scores, which are out of range.
(module
  ;; @prelude
  (func (export "clonekeeper:policy/prioritize@0.2.0#columns") (result i32)
    (call $columns_none))
  (func (export "clonekeeper:policy/prioritize@0.2.0#prioritize")
    (param $args i32) (result i32) (local $n i32)
    (local $out i32) (local $i i32) (local $dst i32)
    (local.set $n (i32.load offset=8 (local.get $args)))
    (local.set $out (call $list_area (local.get $n) (i32.const 16) (i32.const 8)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $dst (i32.add (local.get $out) (i32.mul (local.get $i) (i32.const 16))))
        (f64.store offset=8 (local.get $dst) (f64.const nan))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (call $return_list (local.get $out) (local.get $n)))
)
