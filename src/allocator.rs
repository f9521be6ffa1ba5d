//! How the process's allocator (mimalloc) is set for a controller that holds thousands of
//! variants for weeks.
//!
//! mimalloc's defaults favour throughput: freed pages stay committed for a second before they
//! are returned (`purge_delay`, 1,000 ms in mimalloc 3), and on Linux arena memory is committed
//! ahead of use (`arena_eager_commit`). A cycle allocates and frees its working set every 15 s,
//! so with the defaults the resident size carries that churn on top of what is live. Measured
//! with the scale bench on one replica (`WVA_SCALE_SHARDS=1 cargo bench --bench scale`, each
//! setting run twice through `--one`):
//!
//! | purge delay, eager commit | 10,000 variants: resident, cycle | 1,000 variants |
//! |---|---|---|
//! | defaults (1,000 ms, on)   | 196–197 MiB, 80–90 ms           | 87–118 MiB, 4.7 ms |
//! | 0 ms, off                 | 113–115 MiB, 93–104 ms          | 24 MiB, 10.3–10.9 ms |
//! | **10 ms, off**            | 120–123 MiB, 82–84 ms           | 29–30 MiB, 6.9–7.3 ms |
//! | 25 ms, off                | 127–128 MiB, 93–116 ms          | |
//!
//! Immediate purging returns a little more but pays a system call per freed page run in the
//! cycle; 10 ms (mimalloc 2's default) keeps most of the saving at about the default's speed.
//!
//! The options are read from the environment when the allocator starts, before `main` runs, so
//! they are set where the process is started: the image's `ENV` (checked against this list by
//! `tests/dockerfile.rs`) and the scale bench's child processes. Setting them from the binary
//! would need an `unsafe` FFI call, which the workspace forbids.

/// The environment the controller's process is started with.
pub const ENVIRONMENT: [(&str, &str); 2] = [
    // Return freed pages 10 ms after they are freed, not a second.
    ("MIMALLOC_PURGE_DELAY", "10"),
    // Commit arena memory as it is used, not ahead.
    ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
];
