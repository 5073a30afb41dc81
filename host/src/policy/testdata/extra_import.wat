;; world: extra-import (tests.rs)
;; Hostile: a prioritizer that also imports the environment, which policies may not.
(module
  (import "wasi:cli/environment@0.2.0" "get-arguments" (func $args (param i32)))
  ;; @prelude
  (func (export "clonekeeper:policy/prioritize@0.2.0#columns") (result i32)
    (call $columns_none))
  (func (export "clonekeeper:policy/prioritize@0.2.0#prioritize")
    (param $args i32) (result i32)
    (call $args (i32.const 16))
    (i32.const 16))
)
