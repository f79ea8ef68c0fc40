//! The few file-system calls std does not offer: preallocation, directory fsync and the
//! directory lock. Everything else uses std.

use std::fs::File;
use std::io;

/// Makes `file` `len` bytes long with its blocks allocated (fallocate), so appends neither
/// extend the file nor fail for lack of space. Falls back to `set_len` (a sparse file, still
/// reading as zeros) where the file system cannot preallocate.
pub fn preallocate(file: &File, len: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        let len_off = libc::off_t::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large"))?;
        // SAFETY: fallocate only reads its integer arguments; the fd is valid for `file`'s life.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len_off) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => {}
            _ => return Err(err),
        }
    }
    if file.metadata()?.len() < len {
        file.set_len(len)?;
    }
    Ok(())
}

/// fsyncs a directory, making file creations, renames and deletions in it durable.
pub fn sync_dir(dir: &File) -> io::Result<()> {
    dir.sync_all()
}

/// Takes an exclusive, non-blocking lock on `file` (flock), held until the file is closed.
/// Returns `Ok(false)` if someone else holds it.
pub fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock only reads its integer arguments; the fd is valid for `file`'s life.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Ok(false);
        }
        Err(err)
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        Ok(true)
    }
}
