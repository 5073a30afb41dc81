;; world: prioritizer
;; Hostile: prioritize answers one more time than it was asked.
(module
  ;; @prelude
  (func (export "clonekeeper:policy/prioritize@0.2.0#columns") (result i32)
    (call $columns_none))
  (func (export "clonekeeper:policy/prioritize@0.2.0#prioritize")
    (param $args i32) (result i32) (local $n i32)
    (local $m i32) (local $out i32)
    (local.set $n (i32.load offset=8 (local.get $args)))
    (local.set $m (i32.add (local.get $n) (i32.const 1)))
    ;; Zeroed memory reads as `score(0.0)`.
    (local.set $out (call $list_area (local.get $m) (i32.const 16) (i32.const 8)))
    (call $return_list (local.get $out) (local.get $m)))
)
