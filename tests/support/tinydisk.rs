//! A small tmpfs mounted for a test, so a full disk is real (needs root to mount; the
//! test says so and skips otherwise). Unmounted when dropped.
//! The including test binary has `mod skip` (support/skip.rs) at its root.
#![allow(dead_code)] // each test binary uses a part of it

/// A tmpfs of `bytes` mounted on a fresh folder, unmounted on drop; `None` (with a
/// notice) where mounting is not allowed.
pub struct TinyDisk {
    pub dir: tempfile::TempDir,
}

impl TinyDisk {
    pub fn mount(bytes: u64) -> Option<TinyDisk> {
        let dir = tempfile::tempdir().ok()?;
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => Some(TinyDisk { dir }),
            _ => {
                crate::skip::skip("cannot mount a tmpfs (needs root): full-disk test skipped");
                None
            }
        }
    }
}

impl TinyDisk {
    /// Changes the size limit (tmpfs keeps what it holds).
    pub fn resize(&self, bytes: u64) -> bool {
        std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={bytes}")])
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}
