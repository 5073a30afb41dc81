;; world: prioritizer
;; Hostile: prioritize never returns.
(module
  ;; @prelude
  (func (export "clonekeeper:policy/prioritize@0.2.0#columns") (result i32)
    (call $columns_none))
  (func (export "clonekeeper:policy/prioritize@0.2.0#prioritize")
    (param $args i32) (result i32)
    (loop $forever (br $forever))
    (i32.const 0))
)
