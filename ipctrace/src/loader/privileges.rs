//! Privileges: what ipctrace needs before it loads anything (one line naming what is missing),
//! and giving them up for good once attached (`--user`, as tcpdump -Z does): the open BPF fds,
//! ring buffer mapping and output file keep working without them.

use crate::users::{self, PasswdEntry};
use anyhow::{anyhow, bail, Context, Result};
use std::ffi::CString;
use std::io;

const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// What this run will do that needs privileges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// Load and attach tracing programs.
    pub tracing: bool,
    /// Become another user (--user).
    pub switching_user: bool,
}

/// Fails with one clear line unless this process holds every capability `needs` calls for.
/// Capabilities, not the uid, decide: root in a container may lack CAP_BPF.
pub fn check(needs: Needs) -> Result<()> {
    let mut wanted = Vec::new();
    if needs.tracing {
        wanted.extend([(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]);
    }
    if needs.switching_user {
        wanted.extend([(CAP_SETUID, "CAP_SETUID"), (CAP_SETGID, "CAP_SETGID")]);
    }
    let effective = Capabilities::of_self()?.effective;
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(bit, _)| effective & (1 << bit) == 0)
        .map(|(_, name)| *name)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = wanted.iter().map(|(_, name)| *name).collect();
    bail!(
        "needs root, or the capabilities {} (missing: {})",
        in_words(&names),
        missing.join(", ")
    )
}

/// "A", "A and B", "A, B and C".
fn in_words(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// This thread's capability sets (capget(2)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub effective: u64,
    pub permitted: u64,
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

impl Capabilities {
    pub fn of_self() -> Result<Capabilities> {
        let mut header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let mut data = [CapData::default(); 2];
        // SAFETY: version 3 takes a header and two data structs, which live for the call.
        let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
        if rc != 0 {
            return Err(io::Error::last_os_error()).context("reading capabilities (capget)");
        }
        let join = |low: u32, high: u32| u64::from(low) | u64::from(high) << 32;
        Ok(Capabilities {
            effective: join(data[0].effective, data[1].effective),
            permitted: join(data[0].permitted, data[1].permitted),
        })
    }
}

/// Empties this thread's effective, permitted and inheritable sets (and so the ambient set).
/// Giving capabilities up needs none.
fn clear_capabilities() -> io::Result<()> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: as in capget; the kernel only reads `data`.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The unprivileged user to become once attached (--user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    /// Supplementary groups, from the group database.
    pub groups: Vec<libc::gid_t>,
}

impl User {
    /// Looks up a user name, or a numeric uid that has a passwd entry. Fails with one line for an
    /// unknown user and for root (becoming root gives nothing up).
    pub fn lookup(spec: &str) -> Result<User> {
        let lookup = |spec: &str| -> io::Result<Option<PasswdEntry>> {
            match (users::user_by_name(spec)?, spec.parse::<libc::uid_t>()) {
                (Some(entry), _) => Ok(Some(entry)),
                (None, Ok(uid)) => users::user_by_uid(uid),
                (None, Err(_)) => Ok(None),
            }
        };
        let entry = lookup(spec).context("looking up --user")?;
        let Some(entry) = entry else {
            bail!("--user {spec}: no such user");
        };
        if entry.uid == 0 {
            bail!("--user {spec} is root: name an unprivileged user to run as once attached");
        }
        let groups = supplementary_groups(&entry.name, entry.gid)
            .with_context(|| format!("--user {spec}: reading its groups"))?;
        Ok(User {
            name: entry.name,
            uid: entry.uid,
            gid: entry.gid,
            groups,
        })
    }

    /// Becomes this user for good: its groups, gid and uid (real, effective and saved), no
    /// capabilities left in any set, no way back to root, and no way for that user's other
    /// processes to trace this one and take its BPF fds. Call it with one thread running
    /// (capset is per thread). Fails unless all of that holds afterwards.
    pub fn drop_privileges(&self) -> Result<()> {
        let fail = |what: &str| {
            anyhow!(
                "--user {}: {what}: {}",
                self.name,
                io::Error::last_os_error()
            )
        };
        // SAFETY: credential calls with valid arguments; `groups` outlives setgroups.
        unsafe {
            if prctl(libc::PR_SET_KEEPCAPS, 0) != 0 {
                return Err(fail("PR_SET_KEEPCAPS"));
            }
            // Nothing exec'd later may gain privileges (setuid binaries, file capabilities).
            if prctl(libc::PR_SET_NO_NEW_PRIVS, 1) != 0 {
                return Err(fail("PR_SET_NO_NEW_PRIVS"));
            }
            drop_bounding_set();
            if libc::setgroups(self.groups.len(), self.groups.as_ptr()) != 0 {
                return Err(fail("setgroups"));
            }
            if libc::setresgid(self.gid, self.gid, self.gid) != 0 {
                return Err(fail("setresgid"));
            }
            if libc::setresuid(self.uid, self.uid, self.uid) != 0 {
                return Err(fail("setresuid"));
            }
            // After the uid change, which resets it to the fs.suid_dumpable sysctl.
            if prctl(libc::PR_SET_DUMPABLE, 0) != 0 {
                return Err(fail("PR_SET_DUMPABLE"));
            }
        }
        // Securebits set by a parent (SECBIT_NO_SETUID_FIXUP) could have kept them.
        clear_capabilities().map_err(|e| anyhow!("--user {}: capset: {e}", self.name))?;
        self.verify()
    }

    fn verify(&self) -> Result<()> {
        let (mut r, mut e, mut s) = (0, 0, 0);
        // SAFETY: the pointers are valid for the calls.
        let (uids, gids, regained) = unsafe {
            libc::getresuid(&mut r, &mut e, &mut s);
            let uids = [r, e, s];
            libc::getresgid(&mut r, &mut e, &mut s);
            (uids, [r, e, s], libc::setuid(0) == 0)
        };
        if uids != [self.uid; 3] || gids != [self.gid; 3] {
            bail!(
                "--user {}: still uids {uids:?}, gids {gids:?} after the switch",
                self.name
            );
        }
        if regained {
            bail!("--user {}: could become root again; stopping", self.name);
        }
        let caps = Capabilities::of_self()?;
        if caps.effective != 0 || caps.permitted != 0 {
            bail!(
                "--user {}: capabilities left after the switch: {caps:x?}",
                self.name
            );
        }
        if prctl(libc::PR_GET_DUMPABLE, 0) != 0 {
            bail!("--user {}: still dumpable after the switch", self.name);
        }
        Ok(())
    }
}

/// prctl(2) with one argument, the unused ones zero: all are unsigned longs to the kernel, which
/// rejects garbage in them for some options.
fn prctl(option: libc::c_int, arg: libc::c_ulong) -> libc::c_int {
    // SAFETY: integer arguments only; no option used here takes a pointer.
    unsafe {
        libc::prctl(
            option,
            arg,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    }
}

/// Drops every capability from the bounding set. Needs CAP_SETPCAP, which root has; without it
/// the set stays, and no_new_privs already keeps an exec from using it.
fn drop_bounding_set() {
    for cap in 0..64 {
        if prctl(libc::PR_CAPBSET_DROP, cap) != 0 {
            break; // EINVAL past the last capability this kernel knows, or EPERM
        }
    }
}

/// The groups `name` belongs to (with `gid`), as initgroups(3) would set them.
fn supplementary_groups(name: &str, gid: libc::gid_t) -> Result<Vec<libc::gid_t>> {
    let name = CString::new(name)?;
    let mut groups: Vec<libc::gid_t> = vec![0; 32];
    loop {
        let mut count = groups.len() as libc::c_int;
        // SAFETY: `groups` has room for `count` entries; on -1, `count` says how many are needed.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(count as usize);
            return Ok(groups);
        }
        if count as usize <= groups.len() || count > 65536 {
            bail!("getgrouplist failed");
        }
        groups.resize(count as usize, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_found_by_name_or_by_uid() {
        let by_name = User::lookup("nobody").unwrap();
        assert_eq!(by_name.uid, 65534);
        assert!(by_name.groups.contains(&by_name.gid));
        assert_eq!(User::lookup("65534").unwrap(), by_name);
    }

    #[test]
    fn unknown_users_and_root_are_one_line_errors() {
        for (spec, text) in [
            (
                "no-such-user-here",
                "--user no-such-user-here: no such user",
            ),
            ("4123456789", "--user 4123456789: no such user"),
            (
                "root",
                "--user root is root: name an unprivileged user to run as once attached",
            ),
            (
                "0",
                "--user 0 is root: name an unprivileged user to run as once attached",
            ),
        ] {
            assert_eq!(format!("{:#}", User::lookup(spec).unwrap_err()), text);
        }
    }

    #[test]
    fn needs_are_listed_in_words() {
        assert_eq!(
            in_words(&["CAP_BPF", "CAP_PERFMON"]),
            "CAP_BPF and CAP_PERFMON"
        );
        assert_eq!(
            in_words(&["CAP_BPF", "CAP_PERFMON", "CAP_SETUID"]),
            "CAP_BPF, CAP_PERFMON and CAP_SETUID"
        );
    }

    #[test]
    fn nothing_needed_passes_without_privileges() {
        check(Needs {
            tracing: false,
            switching_user: false,
        })
        .unwrap();
    }
}
