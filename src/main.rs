fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    incident_commander::cli::main()
}

/// glibc gives every thread that allocates an arena of its own (up to eight per core) and keeps
/// what each freed for that thread; the runtime's and the store's threads then hold memory they
/// no longer use. Two arenas keep the process small: in a storm of 30,000 webhooks the bot's
/// resident memory went from 157 to 110 MiB (`cargo bench --bench memory -- 30000 50`). An
/// operator's own `MALLOC_ARENA_MAX` wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; it runs before any other thread.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}
