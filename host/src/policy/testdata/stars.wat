;; world: prioritizer
;; A well-behaved prioritizer: score = stars (0 when unknown) + BONUS.
;; Reads the `stars` column: `stars` (list<u32>, 0 when unknown) sits at offset 68 of the
;; argument area (`now` at 0, the `repo-batch` record from 8).
(module
  ;; @prelude
  (func (export "clonekeeper:policy/prioritize@0.2.0#columns") (result i32)
    (call $columns_one (i32.const 5 (; stars ;))))
  (func (export "clonekeeper:policy/prioritize@0.2.0#prioritize")
    (param $args i32) (result i32) (local $n i32)
    (local $stars i32) (local $out i32) (local $i i32) (local $src i32) (local $dst i32)
    (local.set $n (i32.load offset=8 (local.get $args)))
    (local.set $stars (i32.load offset=68 (local.get $args)))
    (local.set $out (call $list_area (local.get $n) (i32.const 16) (i32.const 8)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $src (i32.add (local.get $stars) (i32.mul (local.get $i) (i32.const 4))))
        (local.set $dst (i32.add (local.get $out) (i32.mul (local.get $i) (i32.const 16))))
        (i32.store8 (local.get $dst) (i32.const 0))
        (f64.store offset=8 (local.get $dst)
          (f64.add
            (f64.const 0 (; BONUS ;))
            (f64.convert_i32_u (i32.load (local.get $src)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (call $return_list (local.get $out) (local.get $n)))
)
