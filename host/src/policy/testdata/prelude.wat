;; Shared by the test modules: one memory and a bump allocator (`cabi_realloc`), which is all
;; the canonical ABI needs from a guest. Every call gets a fresh instance, so nothing is freed.
;; Spliced in where a module says `;; @prelude`.
(memory (export "memory") 1)
(global $heap (mut i32) (i32.const 4096))
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
;; A list of `n` elements of `size` bytes, returned through a fresh return area.
(func $list_area (param $n i32) (param $size i32) (param $align i32) (result i32)
  (call $realloc (i32.const 0) (i32.const 0) (local.get $align) (i32.mul (local.get $n) (local.get $size))))
(func $return_list (param $ptr i32) (param $n i32) (result i32)
  (local $ret i32)
  (local.set $ret (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 8)))
  (i32.store (local.get $ret) (local.get $ptr))
  (i32.store offset=4 (local.get $ret) (local.get $n))
  (local.get $ret))
;; init(config) -> result<_, string>: accepts anything.
(func (export "clonekeeper:policy/lifecycle@0.2.0#init") (param i32 i32) (result i32)
  (local $ret i32)
  (local.set $ret (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 12)))
  (i32.store8 (local.get $ret) (i32.const 0))
  (local.get $ret))
;; `columns` answers: none, or one column by its index in the WIT `column` enum.
(func $columns_none (result i32)
  (call $return_list (i32.const 0) (i32.const 0)))
(func $columns_one (param $column i32) (result i32)
  (local $ptr i32)
  (local.set $ptr (call $realloc (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 1)))
  (i32.store8 (local.get $ptr) (local.get $column))
  (call $return_list (local.get $ptr) (i32.const 1)))
