;; world: prioritizer
;; Hostile: prioritize never returns.
(module
  ;; @prelude
  (func (export "clonekeeper:policy/prioritize@0.1.0#prioritize")
    (param $now i64) (param $repos i32) (param $n i32) (result i32)
    (loop $forever (br $forever))
    (i32.const 0))
)
