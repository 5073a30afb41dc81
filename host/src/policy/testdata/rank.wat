;; world: prioritizer
;; A prioritizer built against 0.2.2: `rank` answers score = stars and lists the positions of
;; repos with 0 stars in `not-now`. The tests splice in wrong answers at the markers: one
;; score more than asked (SCORES_EXTRA), a not-now position past the end (NOT_NOW_SHIFT), and
;; the score given to held-back repos (HELD_SCORE, e.g. NaN, which the host ignores).
;; The answer is a `ranking`: `scores` (list<f64>) then `not-now` (list<u32>), 16 bytes.
(module
  ;; @prelude
  (data (i32.const 3000) "ranked by stars")
  ;; explain-priority(now, repo-view) -> string: the same sentence for every repo.
  (func (export "clonekeeper:policy/explain@0.2.2#explain-priority") (param i32) (result i32)
    (call $return_list (i32.const 3000) (i32.const 15)))
  (func (export "clonekeeper:policy/rank@0.2.2#columns") (result i32)
    (call $columns_one (i32.const 5 (; stars ;))))
  (func (export "clonekeeper:policy/rank@0.2.2#rank")
    (param $args i32) (result i32)
    (local $n i32) (local $stars i32) (local $scores i32) (local $later i32) (local $held i32)
    (local $i i32) (local $value i32) (local $ret i32)
    (local.set $n (i32.load offset=8 (local.get $args)))
    (local.set $stars (i32.load offset=68 (local.get $args)))
    (local.set $scores
      (call $list_area (i32.add (local.get $n) (i32.const 0 (; SCORES_EXTRA ;))) (i32.const 8) (i32.const 8)))
    (local.set $later (call $list_area (local.get $n) (i32.const 4) (i32.const 4)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $value (i32.load (i32.add (local.get $stars) (i32.mul (local.get $i) (i32.const 4)))))
        (f64.store (i32.add (local.get $scores) (i32.mul (local.get $i) (i32.const 8)))
          (f64.convert_i32_u (local.get $value)))
        (if (i32.eqz (local.get $value))
          (then
            (f64.store (i32.add (local.get $scores) (i32.mul (local.get $i) (i32.const 8)))
              (f64.const 0 (; HELD_SCORE ;)))
            (i32.store (i32.add (local.get $later) (i32.mul (local.get $held) (i32.const 4)))
              (i32.add (local.get $i) (i32.const 0 (; NOT_NOW_SHIFT ;))))
            (local.set $held (i32.add (local.get $held) (i32.const 1)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.set $ret (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 16)))
    (i32.store (local.get $ret) (local.get $scores))
    (i32.store offset=4 (local.get $ret) (i32.add (local.get $n) (i32.const 0 (; SCORES_EXTRA ;))))
    (i32.store offset=8 (local.get $ret) (local.get $later))
    (i32.store offset=12 (local.get $ret) (local.get $held))
    (local.get $ret))
)
