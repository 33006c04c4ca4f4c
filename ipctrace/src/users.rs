//! The system's user and group database, through NSS (libc's getpw*_r and getgr*_r: files,
//! systemd, LDAP, whatever nsswitch.conf says): names for the OWNER column, and the user
//! `--user` names. Never /etc/passwd directly: on many systems users live elsewhere.

use std::ffi::{CStr, CString};
use std::io;

/// The fields of a passwd entry ipctrace uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
}

/// The user called `name`; None when there is none.
pub fn user_by_name(name: &str) -> io::Result<Option<PasswdEntry>> {
    let Ok(name) = CString::new(name) else {
        return Ok(None);
    };
    passwd_entry(|pwd, buf, result| {
        // SAFETY: every pointer is valid for the call.
        unsafe { libc::getpwnam_r(name.as_ptr(), pwd, buf.as_mut_ptr(), buf.len(), result) }
    })
}

/// The user with this uid; None when there is none.
pub fn user_by_uid(uid: libc::uid_t) -> io::Result<Option<PasswdEntry>> {
    passwd_entry(|pwd, buf, result| {
        // SAFETY: every pointer is valid for the call.
        unsafe { libc::getpwuid_r(uid, pwd, buf.as_mut_ptr(), buf.len(), result) }
    })
}

/// A uid's user name, if it has one.
pub fn user_name(uid: u32) -> Option<String> {
    user_by_uid(uid).ok().flatten().map(|e| e.name)
}

/// A gid's group name, if it has one.
pub fn group_name(gid: u32) -> Option<String> {
    with_buffer(|buf| {
        // SAFETY: group is plain data; getgrgid_r fills it in, its strings pointing into buf.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result = std::ptr::null_mut();
        let rc =
            unsafe { libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut result) };
        // SAFETY: on success gr_name points into `buf`, NUL-terminated.
        let name = (rc == 0 && !result.is_null()).then(|| {
            unsafe { CStr::from_ptr(grp.gr_name) }
                .to_string_lossy()
                .into_owned()
        });
        (rc, name)
    })
    .ok()
    .flatten()
}

/// Runs a getpw*_r query; None when there is no such entry.
fn passwd_entry(
    query: impl Fn(&mut libc::passwd, &mut [libc::c_char], &mut *mut libc::passwd) -> libc::c_int,
) -> io::Result<Option<PasswdEntry>> {
    with_buffer(|buf| {
        // SAFETY: passwd is plain data; getpw*_r fills it in.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result = std::ptr::null_mut();
        let rc = query(&mut pwd, buf, &mut result);
        let entry = (rc == 0 && !result.is_null()).then(|| PasswdEntry {
            // SAFETY: on success pw_name points into `buf`, NUL-terminated.
            name: unsafe { CStr::from_ptr(pwd.pw_name) }
                .to_string_lossy()
                .into_owned(),
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        });
        (rc, entry)
    })
}

/// Calls `query` with a buffer, growing it while the call says ERANGE (entries with many
/// members need more than the usual kilobyte).
fn with_buffer<T>(
    mut query: impl FnMut(&mut [libc::c_char]) -> (libc::c_int, Option<T>),
) -> io::Result<Option<T>> {
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        match query(&mut buf) {
            (libc::ERANGE, _) if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            (0, found) => return Ok(found),
            (rc, _) => return Err(io::Error::from_raw_os_error(rc)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_by_uid_and_by_name() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert_eq!(group_name(0).as_deref(), Some("root"));
        let root = user_by_name("root").unwrap().unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(user_by_name("no-such-user-ipctrace").unwrap(), None);
        assert_eq!(user_by_name("nul\0byte").unwrap(), None);
        assert_eq!(user_name(3_999_999_999), None);
    }
}
