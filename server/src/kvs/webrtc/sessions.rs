//! The WHEP sessions this process serves: how many may run at once, which address their UDP
//! sockets take, and how a DELETE reaches the session it names.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::error::{ApiError, ErrorType};

#[derive(Debug)]
pub struct WhepSessions {
    /// Offered to browsers as the ICE host candidate; every session binds a UDP port on it.
    pub candidate_ip: IpAddr,
    max_sessions: usize,
    active: Mutex<HashMap<String, Active>>,
}

#[derive(Debug)]
struct Active {
    /// The stream's public name: a DELETE must come with a token for the same stream.
    stream: String,
    stop: Arc<Notify>,
}

impl WhepSessions {
    pub fn new(candidate_ip: IpAddr, max_sessions: usize) -> WhepSessions {
        WhepSessions { candidate_ip, max_sessions, active: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Active>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new session of `stream`: its id and what stops it, or ClientLimitExceeded
    /// when `max_sessions` already run.
    pub fn admit(&self, stream: &str) -> Result<(String, Arc<Notify>), ApiError> {
        let mut active = self.lock();
        if active.len() >= self.max_sessions {
            return Err(ApiError::new(
                ErrorType::ClientLimitExceeded,
                format!("This server already serves {} WebRTC sessions.", self.max_sessions),
            ));
        }
        let id = format!("{:032x}", rand::random::<u128>());
        let stop = Arc::new(Notify::new());
        active.insert(id.clone(), Active { stream: stream.to_string(), stop: stop.clone() });
        Ok((id, stop))
    }

    /// Stops session `id` of `stream`; false when there is no such session.
    pub fn stop(&self, id: &str, stream: &str) -> bool {
        let mut active = self.lock();
        match active.get(id) {
            Some(session) if session.stream == stream => {
                // notify_one keeps the permit if the session is between two waits.
                session.stop.notify_one();
                active.remove(id);
                true
            }
            _ => false,
        }
    }

    /// The session ended by itself.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_bounded_and_stopped_only_by_their_stream() {
        let sessions = WhepSessions::new(IpAddr::from([127, 0, 0, 1]), 2);
        let (first, _) = sessions.admit("door").expect("room");
        let (_second, _) = sessions.admit("yard").expect("room");
        let refused = sessions.admit("door").expect_err("full");
        assert_eq!(refused.kind, ErrorType::ClientLimitExceeded);
        assert!(!sessions.stop(&first, "yard"), "a token for another stream cannot stop it");
        assert!(sessions.stop(&first, "door"));
        assert!(!sessions.stop(&first, "door"), "stopped once");
        assert_eq!(sessions.count(), 1);
        assert!(sessions.admit("door").is_ok());
    }
}
