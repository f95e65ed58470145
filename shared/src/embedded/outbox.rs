//! Mail for `tidings serve`: each message is an RFC 5322 `.eml` file in `<data-dir>/outbox/`
//! (open it with any mail client) and a log line.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use mail_builder::MessageBuilder;

use crate::ports::{Email, Mailer};
use crate::{Error, Result};

pub struct OutboxMailer {
    dir: PathBuf,
    from_name: String,
    from_address: String,
}

impl OutboxMailer {
    pub fn new(dir: impl Into<PathBuf>, from_name: impl Into<String>, from_address: impl Into<String>) -> Self {
        OutboxMailer { dir: dir.into(), from_name: from_name.into(), from_address: from_address.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, email: &Email) -> Result<()> {
        let message = MessageBuilder::new()
            .from((self.from_name.as_str(), self.from_address.as_str()))
            .to(email.to.as_str())
            .subject(email.subject.as_str())
            .text_body(email.text.as_str())
            .write_to_vec()
            .map_err(|e| Error::internal(format!("cannot build email: {e}")))?;
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| Error::internal(format!("cannot create outbox {}: {e}", self.dir.display())))?;
        let stamp = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        let path = self.dir.join(format!("{stamp}-{}.eml", uuid::Uuid::new_v4().simple()));
        // Write then rename, so a reader never sees half a message.
        let partial = path.with_extension("eml.partial");
        tokio::fs::write(&partial, &message)
            .await
            .map_err(|e| Error::internal(format!("cannot write {}: {e}", partial.display())))?;
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(|e| Error::internal(format!("cannot write {}: {e}", path.display())))?;
        tracing::info!(to = %email.to, subject = %email.subject, file = %path.display(), "alert email written to outbox");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_a_parseable_eml_file() {
        let dir = tempfile::tempdir().unwrap();
        let mailer = OutboxMailer::new(dir.path().join("outbox"), "Tidings", "alerts@tidings.local");
        let email = Email {
            to: "ops@example.com".into(),
            subject: "Subscription failing".into(),
            text: "Line one\nLine two".into(),
        };
        mailer.send(&email).await.unwrap();
        let files: Vec<_> = std::fs::read_dir(mailer.dir()).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].extension().unwrap(), "eml");
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(text.contains("From: \"Tidings\" <alerts@tidings.local>"), "{text}");
        assert!(text.contains("ops@example.com"));
        assert!(text.contains("Subject: Subscription failing"));
        assert!(text.contains("Line two"));
        assert!(text.contains("Date: "));
        assert!(text.contains("Message-ID: "));
    }
}
