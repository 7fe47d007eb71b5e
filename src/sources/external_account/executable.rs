//! Executable-sourced subject tokens (AIP-4117, "executable-sourced
//! credentials", <https://google.aip.dev/auth/4117>): a program the
//! credential file names prints the token as JSON on stdout —
//!
//! ```json
//! {"version": 1, "success": true,
//!  "token_type": "urn:ietf:params:oauth:token-type:id_token",
//!  "id_token": "eyJ…", "expiration_time": 1700000000}
//! ```
//!
//! (`saml_response` for `…:saml2`; `{"version": 1, "success": false,
//! "code": "…", "message": "…"}` on failure).
//!
//! When to use: an identity provider with no file or URL to read from, say
//! a corporate CLI that prints an OIDC token. Security: running a program
//! named in a file is code execution, so nothing runs unless
//! `GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1` (as google-auth and gcloud
//! require). The command is split like a POSIX shell's words but never run
//! by a shell; it gets no stdin, its stderr is discarded (it may print
//! secrets), and it is killed — with everything it started, on Unix — when
//! `timeout_millis` (default 30 s, 5 s to 120 s) runs out or its output
//! passes [`MAX_SUBJECT_TOKEN`] bytes. A response it left in `output_file`
//! that has not expired is used instead of running it again (the file is
//! the program's own cache; it is never written here).
//!
//! Interactive mode (`interactive_timeout_millis`, a person signing in) is
//! gcloud's; an agent never runs a program interactively, so it is ignored.
//!
//! The program is told, in its environment: `GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE`,
//! `…_TOKEN_TYPE`, `…_INTERACTIVE=0`, `…_IMPERSONATED_EMAIL` (with
//! impersonation) and `…_OUTPUT_FILE` (with an output file).

use std::fmt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncReadExt;
use zeroize::Zeroizing;

use super::credential_source::{read_file_bounded, Fields, SubjectContext, MAX_SUBJECT_TOKEN};
use crate::error::{Error, Result};
use crate::identity::IdentityBuilder;
use crate::sources::json_problem;
use crate::token::Secret;

/// The opt-in without which no executable runs.
pub const ALLOW_VAR: &str = "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES";
/// `timeout_millis` when the file gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The `timeout_millis` AIP-4117 allows.
pub const TIMEOUTS_MILLIS: std::ops::RangeInclusive<u64> = 5_000..=120_000;
/// The newest response `version` understood.
pub const SUPPORTED_VERSION: u64 = 1;

const OIDC_TYPES: [&str; 2] = [
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
];
const SAML_TYPE: &str = "urn:ietf:params:oauth:token-type:saml2";

/// `credential_source.executable`.
pub struct Executable {
    /// As written: part of the identity, never shown (arguments may be secret).
    command: String,
    argv: Vec<String>,
    timeout: Duration,
    output_file: Option<PathBuf>,
    /// `origin: field \`credential_source.executable.command\``, for errors.
    what: String,
}

impl Executable {
    pub(crate) fn parse(mut f: Fields) -> Result<Self> {
        let what = f.name("command");
        let command = f
            .string("command")?
            .ok_or_else(|| Error::Config(format!("{what} is missing or empty")))?;
        let argv = split_command(&command).ok_or_else(|| {
            Error::Config(format!(
                "{what} has an unterminated quote or a trailing backslash"
            ))
        })?;
        if argv.is_empty() {
            return Err(Error::Config(format!("{what} is missing or empty")));
        }
        let timeout = match f.whole_number("timeout_millis")? {
            None => DEFAULT_TIMEOUT,
            Some(ms) if TIMEOUTS_MILLIS.contains(&ms) => Duration::from_millis(ms),
            Some(ms) => {
                return Err(Error::Config(format!(
                    "{} is {ms}; AIP-4117 allows {} to {} milliseconds",
                    f.name("timeout_millis"),
                    TIMEOUTS_MILLIS.start(),
                    TIMEOUTS_MILLIS.end()
                )))
            }
        };
        let output_file = f.string("output_file")?.map(PathBuf::from);
        Ok(Executable {
            command,
            argv,
            timeout,
            output_file,
            what,
        })
    }

    /// The program run (its arguments are never shown).
    pub fn program(&self) -> &str {
        &self.argv[0]
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub(crate) fn identify(&self, id: &mut IdentityBuilder) {
        id.fingerprint(self.command.as_bytes())
            .part(&(self.timeout.as_millis() as u64).to_be_bytes())
            .optional(self.output_file.as_ref().and_then(|p| p.to_str()));
    }

    /// The label errors use: `executable PROGRAM`.
    fn endpoint(&self) -> String {
        format!("executable {}", self.program())
    }

    pub(crate) async fn subject_token(&self, ctx: &SubjectContext<'_>) -> Result<Secret> {
        if std::env::var(ALLOW_VAR).as_deref() != Ok("1") {
            return Err(Error::Config(format!(
                "{}: this credential runs a program ({}) to get its subject token, and programs \
                 named in credential files run only when {ALLOW_VAR}=1 is set; set it if you \
                 trust this file, or use a file or url credential source",
                self.what,
                self.program()
            )));
        }
        if let Some(token) = self.cached_response().await {
            return Ok(token);
        }
        let stdout = self.run(ctx).await?;
        let endpoint = self.endpoint();
        let from_stdout = !stdout.iter().all(u8::is_ascii_whitespace);
        let body = match (&self.output_file, from_stdout) {
            (_, true) => stdout,
            (Some(path), false) => {
                read_file_bounded(
                    path.clone(),
                    format!("{}: output_file {}", self.what, path.display()),
                )
                .await?
            }
            (None, false) => {
                return Err(super::super::invalid(
                    &endpoint,
                    "it printed nothing; it must print its JSON response on stdout".into(),
                ))
            }
        };
        match parse_response(&body, SystemTime::now()) {
            Ok(Response::Token { token, .. }) => Ok(token),
            Ok(Response::Failed { code, message }) => Err(super::super::invalid(
                &endpoint,
                format!("it reported failure: code {code:?}: {message}"),
            )),
            Err(why) => Err(super::super::invalid(&endpoint, why)),
        }
    }

    /// An unexpired successful response the program left in `output_file`.
    async fn cached_response(&self) -> Option<Secret> {
        let path = self.output_file.clone()?;
        let bytes = read_file_bounded(path, format!("{}: output_file", self.what))
            .await
            .ok()?;
        match parse_response(&bytes, SystemTime::now()) {
            // Without an expiration time a cached response counts as expired (AIP-4117).
            Ok(Response::Token {
                token,
                expires: Some(_),
            }) => Some(token),
            _ => None,
        }
    }

    /// Runs the program once; its stdout, at most [`MAX_SUBJECT_TOKEN`] bytes.
    async fn run(&self, ctx: &SubjectContext<'_>) -> Result<Zeroizing<Vec<u8>>> {
        let endpoint = self.endpoint();
        let mut cmd = tokio::process::Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .env("GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE", ctx.audience)
            .env("GOOGLE_EXTERNAL_ACCOUNT_TOKEN_TYPE", ctx.subject_token_type)
            .env("GOOGLE_EXTERNAL_ACCOUNT_INTERACTIVE", "0");
        if let Some(email) = ctx.impersonated_email {
            cmd.env("GOOGLE_EXTERNAL_ACCOUNT_IMPERSONATED_EMAIL", email);
        }
        if let Some(path) = &self.output_file {
            cmd.env("GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE", path);
        }
        // Its own process group, so a timeout kills what it started too.
        #[cfg(unix)]
        cmd.process_group(0);
        let mut child = cmd.spawn().map_err(|e| {
            Error::Config(format!(
                "{}: the program {:?} cannot be started ({})",
                self.what,
                self.program(),
                match e.kind() {
                    std::io::ErrorKind::NotFound => "not found".to_owned(),
                    std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
                    _ => e.to_string(),
                }
            ))
        })?;
        let group = child.id();
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let started = std::time::Instant::now();
        let mut out = Zeroizing::new(Vec::new());
        let outcome = tokio::time::timeout(self.timeout, async {
            (&mut stdout)
                .take(MAX_SUBJECT_TOKEN as u64 + 1)
                .read_to_end(&mut out)
                .await?;
            if out.len() > MAX_SUBJECT_TOKEN {
                return Ok(None);
            }
            child.wait().await.map(Some)
        })
        .await;
        let status = match outcome {
            Ok(Ok(Some(status))) => status,
            other => {
                kill_group(group);
                let _ = child.kill().await;
                return Err(match other {
                    Err(_) => Error::Timeout {
                        endpoint,
                        what: "subject token executable (killed; raise timeout_millis if it needs longer)",
                        after: started.elapsed(),
                    },
                    Ok(Ok(None)) => super::super::invalid(
                        &endpoint,
                        format!(
                            "its output exceeds {} KiB (killed)",
                            MAX_SUBJECT_TOKEN / 1024
                        ),
                    ),
                    Ok(Err(e)) => Error::Unavailable {
                        endpoint,
                        detail: format!("reading its output failed: {e}"),
                    },
                    Ok(Ok(Some(_))) => unreachable!("handled above"),
                });
            }
        };
        if !status.success() {
            return Err(Error::Unavailable {
                endpoint,
                detail: format!(
                    "it exited with {status}; run the command yourself to see its messages \
                     (its stderr is not shown, as it may hold secrets)"
                ),
            });
        }
        Ok(out)
    }
}

/// Kills a child's whole process group (Unix); a no-op elsewhere.
fn kill_group(pid: Option<u32>) {
    #[cfg(unix)]
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) with a negative pid signals that process group;
        // the group leader is our unreaped child, so the id is still ours.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    #[cfg(not(unix))]
    let _ = pid;
}

impl fmt::Debug for Executable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executable")
            .field("program", &self.program())
            .field("timeout", &self.timeout)
            .field("output_file", &self.output_file)
            .finish_non_exhaustive()
    }
}

/// A parsed executable response.
#[derive(Debug)]
pub(crate) enum Response {
    Token {
        token: Secret,
        expires: Option<SystemTime>,
    },
    Failed {
        code: String,
        message: String,
    },
}

/// Reads the AIP-4117 response; the error says what is wrong without
/// quoting the output.
pub(crate) fn parse_response(
    body: &[u8],
    now: SystemTime,
) -> std::result::Result<Response, String> {
    use serde_json::Value;
    let value: Value =
        serde_json::from_slice(body).map_err(|e| json_problem(&e, "its response"))?;
    let Value::Object(map) = value else {
        return Err("its response is not a JSON object".into());
    };
    let mut r = crate::sources::JsonObject(map);
    let version = match r.take("version") {
        Some(Value::Number(n)) => n.as_u64().ok_or("`version` is not a whole number")?,
        Some(_) => return Err("`version` is not a number".into()),
        None => return Err("its response has no `version`".into()),
    };
    if version > SUPPORTED_VERSION {
        return Err(format!(
            "its response has version {version}; versions up to {SUPPORTED_VERSION} are understood"
        ));
    }
    let success = match r.take("success") {
        Some(Value::Bool(b)) => b,
        Some(_) => return Err("`success` is not true or false".into()),
        None => return Err("its response has no `success`".into()),
    };
    let mut text = |field: &str| -> Option<String> {
        match r.take(field) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    };
    if !success {
        let clean = |s: String| -> String {
            s.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(300)
                .collect()
        };
        return match (text("code"), text("message")) {
            (Some(code), Some(message)) => Ok(Response::Failed {
                code: clean(code),
                message: clean(message),
            }),
            _ => Err("it reported failure without `code` and `message`".into()),
        };
    }
    let token_type = text("token_type").ok_or("its response has no `token_type`")?;
    let field = if OIDC_TYPES.contains(&token_type.as_str()) {
        "id_token"
    } else if token_type == SAML_TYPE {
        "saml_response"
    } else {
        return Err("its `token_type` is none of jwt, id_token or saml2".into());
    };
    let token = text(field)
        .filter(|t| !t.trim().is_empty())
        .map(|t| Secret::new(t.trim()))
        .ok_or_else(|| format!("its response has no `{field}`"))?;
    let expires = match r.take("expiration_time") {
        None => None,
        Some(Value::Number(n)) => {
            let secs = n.as_f64().filter(|s| (0.0..1e11).contains(s));
            let at = secs
                .map(|s| UNIX_EPOCH + Duration::from_secs_f64(s))
                .ok_or("`expiration_time` is not a Unix time in seconds")?;
            if at <= now {
                return Err("the token it returned has expired (`expiration_time`)".into());
            }
            Some(at)
        }
        Some(_) => return Err("`expiration_time` is not a number".into()),
    };
    Ok(Response::Token { token, expires })
}

/// Splits a command line into words as a POSIX shell would (quotes and
/// backslashes; no expansion, no operators). `None` for an unterminated
/// quote or a trailing backslash.
pub fn split_command(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '\\' | '$' | '`') => word.push(c),
                            '\n' => {}
                            c => {
                                word.push('\\');
                                word.push(c);
                            }
                        },
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next()? {
                    '\n' => {}
                    c => word.push(c),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}
