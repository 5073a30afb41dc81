;; world: prioritizer
;; Hostile: prioritize grows memory until the host says no.
(module
  ;; @prelude
  (func (export "clonekeeper:policy/prioritize@0.2.0#columns") (result i32)
    (call $columns_none))
  (func (export "clonekeeper:policy/prioritize@0.2.0#prioritize")
    (param $args i32) (result i32)
    (loop $more
      (br_if $more (i32.ne (memory.grow (i32.const 256)) (i32.const -1))))
    (i32.const 0))
)
