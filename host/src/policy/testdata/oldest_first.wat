;; world: prioritizer
;; A well-behaved prioritizer: lower ids first (score = -id); the repo named in a not-now
;; test (id 2) is deferred. Reads the `id` column: `ids` (8 bytes an entry) sits at offset 12
;; of the argument area (`now` at 0, the `repo-batch` record from 8: `len`, then the lists).
(module
  ;; @prelude
  (func (export "clonekeeper:policy/prioritize@0.2.0#columns") (result i32)
    (call $columns_one (i32.const 0 (; id ;))))
  (func (export "clonekeeper:policy/prioritize@0.2.0#prioritize")
    (param $args i32) (result i32) (local $n i32)
    (local $ids i32) (local $out i32) (local $i i32) (local $src i32) (local $dst i32)
    (local.set $n (i32.load offset=8 (local.get $args)))
    (local.set $ids (i32.load offset=12 (local.get $args)))
    (local.set $out (call $list_area (local.get $n) (i32.const 16) (i32.const 8)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $src (i32.add (local.get $ids) (i32.mul (local.get $i) (i32.const 8))))
        (local.set $dst (i32.add (local.get $out) (i32.mul (local.get $i) (i32.const 16))))
        (if (i64.eq (i64.load (local.get $src)) (i64.const 2))
          (then (i32.store8 (local.get $dst) (i32.const 1)))
          (else
            (i32.store8 (local.get $dst) (i32.const 0))
            (f64.store offset=8 (local.get $dst) (f64.neg (f64.convert_i64_s (i64.load (local.get $src)))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (call $return_list (local.get $out) (local.get $n)))
)
