;; The boundary alone: a prioritizer that asks for popular-first's columns (flags, stars,
;; updated-at) and answers `rank` with scores = stars, computing nothing else. Timing it
;; beside popular-first splits a call into what crossing costs and what the guest's
;; arithmetic does.
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (data (i32.const 16) "\04\05\07")
  (func $realloc (export "cabi_realloc")
    (param $old i32) (param $old_size i32) (param $align i32) (param $new_size i32) (result i32)
    (local $ptr i32) (local $need i32)
    (local.set $ptr
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    (global.set $heap (i32.add (local.get $ptr) (local.get $new_size)))
    (local.set $need (i32.sub (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then
        (if (i32.eq (memory.grow (i32.add (i32.shr_u (local.get $need) (i32.const 16)) (i32.const 1))) (i32.const -1))
          (then unreachable))))
    (local.get $ptr))
  (data (i32.const 80) "boundary")
  ;; explain-priority: the same word for every repo (the world asks for it; never timed).
  (func (export "clonekeeper:policy/explain@0.2.2#explain-priority") (param i32) (result i32)
    (i32.store (i32.const 96) (i32.const 80))
    (i32.store (i32.const 100) (i32.const 8))
    (i32.const 96))
  (func (export "clonekeeper:policy/lifecycle@0.2.2#init") (param i32 i32) (result i32)
    (i32.store8 (i32.const 48) (i32.const 0))
    (i32.const 48))
  ;; [flags, stars, updated-at], by their index in `column`.
  (func (export "clonekeeper:policy/rank@0.2.2#columns") (result i32)
    (i32.store (i32.const 32) (i32.const 16))
    (i32.store (i32.const 36) (i32.const 3))
    (i32.const 32))
  ;; The argument area: `now` at 0, then the repo-batch: `len` at 8, `stars` (list<u32>) at 68.
  ;; The answer, a `ranking`: `scores` (list<f64>) at 64 and 68, an empty `not-now` at 72.
  (func (export "clonekeeper:policy/rank@0.2.2#rank") (param $args i32) (result i32)
    (local $n i32) (local $stars i32) (local $out i32) (local $i i32)
    (local.set $n (i32.load offset=8 (local.get $args)))
    (local.set $stars (i32.load offset=68 (local.get $args)))
    (local.set $out (call $realloc (i32.const 0) (i32.const 0) (i32.const 8) (i32.mul (local.get $n) (i32.const 8))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (f64.store (i32.add (local.get $out) (i32.mul (local.get $i) (i32.const 8)))
          (f64.convert_i32_u (i32.load (i32.add (local.get $stars) (i32.mul (local.get $i) (i32.const 4))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.store (i32.const 64) (local.get $out))
    (i32.store (i32.const 68) (local.get $n))
    (i32.store (i32.const 72) (i32.const 8))
    (i32.store (i32.const 76) (i32.const 0))
    (i32.const 64))
)
