;; world: limiter
;; A well-behaved limiter: every key seen gets 3600 per hour, burst 2, at most 1 in flight.
;; key-load = 32 bytes (key: 12, service-type: 8, repos, queued, in-flight); limit = 28 bytes
;; (key: 12, per-hour @12, burst @16, max-in-flight option<u32> @20/@24).
(module
  ;; @prelude
  (func (export "clonekeeper:policy/rate-limits@0.2.0#limits")
    (param $now i64) (param $seen i32) (param $n i32) (result i32)
    (local $out i32) (local $i i32) (local $src i32) (local $dst i32)
    (local.set $out (call $list_area (local.get $n) (i32.const 28) (i32.const 4)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $src (i32.add (local.get $seen) (i32.mul (local.get $i) (i32.const 32))))
        (local.set $dst (i32.add (local.get $out) (i32.mul (local.get $i) (i32.const 28))))
        (i32.store (local.get $dst) (i32.load (local.get $src)))
        (i32.store offset=4 (local.get $dst) (i32.load offset=4 (local.get $src)))
        (i32.store offset=8 (local.get $dst) (i32.load offset=8 (local.get $src)))
        (i32.store offset=12 (local.get $dst) (i32.const 3600 (; PER_HOUR ;)))
        (i32.store offset=16 (local.get $dst) (i32.const 2))
        (i32.store8 offset=20 (local.get $dst) (i32.const 1))
        (i32.store offset=24 (local.get $dst) (i32.const 1))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (call $return_list (local.get $out) (local.get $n)))
)
