;; world: prioritizer
;; Hostile: prioritize grows memory until the host says no.
(module
  ;; @prelude
  (func (export "clonekeeper:policy/prioritize@0.1.0#prioritize")
    (param $now i64) (param $repos i32) (param $n i32) (result i32)
    (loop $more
      (br_if $more (i32.ne (memory.grow (i32.const 256)) (i32.const -1))))
    (i32.const 0))
)
