;; world: wrong-signature (tests.rs, with a forged contract)
;; Hostile: exports `prioritize` as func(now: s64) -> u32.
(module
  ;; @prelude
  (func (export "clonekeeper:policy/prioritize@0.2.0#prioritize") (param i64) (result i32)
    (i32.const 7))
)
