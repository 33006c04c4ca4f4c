//! Time as the kernel stamps it (CLOCK_MONOTONIC) and as people read it (wall clock): one place
//! that reads the clocks, so the model is handed times and never reads one itself.

/// Converts CLOCK_MONOTONIC timestamps (what the kernel stamps) to wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    offset_ns: i128,
}

impl WallClock {
    pub fn now() -> WallClock {
        let mono = clock_ns(libc::CLOCK_MONOTONIC);
        let real = clock_ns(libc::CLOCK_REALTIME);
        WallClock {
            offset_ns: real - mono,
        }
    }

    /// Seconds since the epoch, with nanoseconds.
    pub fn epoch_ns(&self, mono_ns: u64) -> i128 {
        mono_ns as i128 + self.offset_ns
    }

    /// HH:MM:SS.mmm in local time, as a person reads a trace.
    pub fn time_of_day(&self, mono_ns: u64) -> String {
        let ns = self.epoch_ns(mono_ns);
        // time_t is i64 on x86_64 with glibc and musl alike (libc's alias warns under musl).
        let secs = ns.div_euclid(1_000_000_000) as i64;
        let millis = ns.rem_euclid(1_000_000_000) / 1_000_000;
        // SAFETY: localtime_r writes into the zeroed tm we own.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        unsafe { libc::localtime_r(&secs, &mut tm) };
        format!(
            "{:02}:{:02}:{:02}.{millis:03}",
            tm.tm_hour, tm.tm_min, tm.tm_sec
        )
    }
}

/// CLOCK_MONOTONIC now, the clock of the kernel's timestamps.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}

pub fn clock_ns(clock: libc::clockid_t) -> i128 {
    // SAFETY: clock_gettime writes into the timespec we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_is_near_now() {
        let clock = WallClock::now();
        let mono = clock_ns(libc::CLOCK_MONOTONIC) as u64;
        let real = clock_ns(libc::CLOCK_REALTIME);
        assert!((clock.epoch_ns(mono) - real).abs() < 1_000_000_000);
        assert_eq!(clock.time_of_day(mono).len(), 12);
    }
}
