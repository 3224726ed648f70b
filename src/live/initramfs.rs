//! The last step of apply and revert: the pending initramfs must match the /etc drop-ins they changed.
//!
//! Under regeneration that is on, every new deployment regenerates the initramfs from /etc. apply and revert
//! mark the pending deployment (`initramfs_stale_in`) before they change drop-ins; if it is still the pending
//! one once their other commands ran (none of them makes a deployment, or one failed), it needs a rebuild of
//! its own.

use anyhow::Result;

use super::changes;
use super::session::Session;

/// Rebuilds the pending initramfs when it is still the marked one, with `initramfs --enable` and the
/// origin's own args. Without args rpm-ostree refuses that, so the marker stays and the reason is returned:
/// the next apply or revert says so again, until some new deployment exists.
pub(crate) fn rebuild_if_stale(session: &mut Session) -> Result<Option<&'static str>> {
    let Some(stale) = session.record.initramfs_stale_in.clone() else {
        return Ok(None);
    };
    let pending = session.host.pending()?;
    if stale == pending.id && pending.regenerate_initramfs {
        if pending.initramfs_args.is_empty() {
            return Ok(Some(changes::INITRAMFS_NOT_REBUILT));
        }
        let command = session.host.rpm.initramfs_rerun(&pending.initramfs_args);
        session.run_listed(&command)?;
    }
    session.record.initramfs_stale_in = None;
    session.save_record()?;
    Ok(None)
}
