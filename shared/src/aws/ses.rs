//! Alert mail through SES v2 (`SendEmail` with simple content).

use async_trait::async_trait;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use aws_sdk_sesv2::Client;

use super::sdk::sdk_error;
use crate::ports::{Email, Mailer};
use crate::{Error, Result};

pub struct SesMailer {
    client: Client,
    from: String,
}

impl SesMailer {
    pub fn new(client: Client, from: impl Into<String>) -> Self {
        SesMailer { client, from: from.into() }
    }
}

fn utf8(text: &str) -> Result<Content> {
    Content::builder().data(text).charset("UTF-8").build().map_err(Error::internal)
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, email: &Email) -> Result<()> {
        let message = Message::builder()
            .subject(utf8(&email.subject)?)
            .body(Body::builder().text(utf8(&email.text)?).build())
            .build();
        self.client
            .send_email()
            .from_email_address(&self.from)
            .destination(Destination::builder().to_addresses(&email.to).build())
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map_err(|e| sdk_error("SES SendEmail", e))?;
        tracing::info!(to = %email.to, subject = %email.subject, "alert email sent");
        Ok(())
    }
}
