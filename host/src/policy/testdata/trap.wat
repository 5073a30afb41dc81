;; world: prioritizer
;; Hostile: prioritize traps.
(module
  ;; @prelude
  (func (export "clonekeeper:policy/prioritize@0.1.0#prioritize")
    (param $now i64) (param $repos i32) (param $n i32) (result i32)
    unreachable)
)
