//! The catalogue of every rule: id, family, default severity, one-line title and the fix.
//! SARIF's `tool.driver.rules`, `docs/rules.md` and `--help` all read from here.

use crate::content_rules::{CONTENT_RULES, HIGH_ENTROPY_ID};
use crate::finding::Severity;

/// Rule families, in the order the issue lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    Compose,
    Dockerfile,
    Shell,
    Content,
    Image,
    Container,
}

impl Family {
    pub const ALL: [Family; 6] = [
        Family::Compose,
        Family::Dockerfile,
        Family::Shell,
        Family::Content,
        Family::Image,
        Family::Container,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Compose => "compose",
            Family::Dockerfile => "dockerfile",
            Family::Shell => "shell",
            Family::Content => "content",
            Family::Image => "image",
            Family::Container => "container",
        }
    }
}

#[derive(Clone, Debug)]
pub struct RuleInfo {
    pub id: &'static str,
    pub family: Family,
    pub severity: Severity,
    pub title: &'static str,
    pub fix: &'static str,
}

const CONTENT_FIX: &str = "Revoke and rotate the credential, remove it from the file (and from git history), \
     and deliver it at run time instead: `lockbox secret create NAME -` and a `/run/secrets/NAME` file \
     (`lockbox run --secret NAME`, `lockbox docker run`, or Compose `secrets:`).";

/// Structural rules (everything that is not a content regex).
pub static STRUCTURAL_RULES: &[RuleInfo] = &[
    RuleInfo {
        id: "compose.env-literal-secret",
        family: Family::Compose,
        severity: Severity::High,
        title: "Secret-looking variable with a literal value in a Compose `environment:`",
        fix: "Environment variables show in `docker inspect`. Move the value to a secret: declare it under top-level \
              `secrets:` (or `lockbox secret create NAME -`), grant it to the service with `secrets: [NAME]`, and set \
              `VAR_FILE=/run/secrets/NAME` if the image supports `*_FILE`.",
    },
    RuleInfo {
        id: "compose.env-file-secret",
        family: Family::Compose,
        severity: Severity::High,
        title: "Secret-looking variable with a literal value in a Compose `env_file`",
        fix: "An env_file becomes the container's environment (visible in `docker inspect`). Keep the value in a \
              secret file referenced from `secrets:` and read it from `/run/secrets/NAME`.",
    },
    RuleInfo {
        id: "compose.use-file-variant",
        family: Family::Compose,
        severity: Severity::Medium,
        title: "Official image given `VAR` where it supports `VAR_FILE`",
        fix: "The image reads `VAR_FILE` as \"load VAR from this file\": grant a secret to the service and set \
              `VAR_FILE: /run/secrets/NAME` instead of `VAR`.",
    },
    RuleInfo {
        id: "compose.var-and-file-both-set",
        family: Family::Compose,
        severity: Severity::Medium,
        title: "Both `VAR` and `VAR_FILE` set for an official image (its entrypoint exits with an error)",
        fix: "Remove `VAR` and keep `VAR_FILE: /run/secrets/NAME`.",
    },
    RuleInfo {
        id: "compose.secret-file-not-ignored",
        family: Family::Compose,
        severity: Severity::High,
        title: "`secrets: file:` path is not ignored by git",
        fix: "Add the file to `.gitignore` (and remove it from the index with `git rm --cached FILE` if it was \
              committed), or keep the value in lockbox and declare the secret `external: true`.",
    },
    RuleInfo {
        id: "compose.secret-file-missing",
        family: Family::Compose,
        severity: Severity::Medium,
        title: "`secrets: file:` path does not exist (Compose would bind-mount a new empty directory)",
        fix: "Create the file before `up`, fix the path (it is relative to the Compose file), or use \
              `lockbox compose`, which refuses missing sources.",
    },
    RuleInfo {
        id: "compose.secret-mode-decimal",
        family: Family::Compose,
        severity: Severity::Medium,
        title: "Secret `mode:` written in decimal that was probably meant as octal",
        fix: "Write the mode in octal with a leading zero: `mode: 0440` (or `0o440`); `440` is decimal 440 = 0o670.",
    },
    RuleInfo {
        id: "compose.secret-external-and-file",
        family: Family::Compose,
        severity: Severity::Medium,
        title: "Secret declares both `external` and `file`",
        fix: "A secret is either external (created beforehand, e.g. `lockbox secret create`) or read from `file:`; \
              drop one of the two.",
    },
    RuleInfo {
        id: "dockerfile.arg-secret",
        family: Family::Dockerfile,
        severity: Severity::Medium,
        title: "`ARG` with a secret-looking name (build args stay in `docker history`)",
        fix: "Use a build secret: `RUN --mount=type=secret,id=NAME …` reading `/run/secrets/NAME`, built with \
              `docker build --secret id=NAME,src=FILE` or `lockbox build --secret id=NAME`.",
    },
    RuleInfo {
        id: "dockerfile.env-secret",
        family: Family::Dockerfile,
        severity: Severity::High,
        title: "`ENV` with a secret-looking name (baked into the image config and every container)",
        fix: "Do not bake secrets into the image: set `NAME_FILE=/run/secrets/NAME` and grant the secret at run time \
              (`lockbox docker run --secret NAME`, Compose `secrets:`).",
    },
    RuleInfo {
        id: "dockerfile.arg-secret-in-run",
        family: Family::Dockerfile,
        severity: Severity::High,
        title: "Secret `ARG` used in `RUN` (its value lands in the image history as `|N NAME=value`)",
        fix: "Replace the ARG with `RUN --mount=type=secret,id=NAME` and read `/run/secrets/NAME` in the command.",
    },
    RuleInfo {
        id: "dockerfile.copy-secret-file",
        family: Family::Dockerfile,
        severity: Severity::High,
        title: "`COPY`/`ADD` of a secret-looking file (key, `.env`, credentials) into an image layer",
        fix: "Files copied into a layer ship with the image even if deleted later. Mount it for the one step that \
              needs it: `RUN --mount=type=secret,id=NAME,target=PATH …`, and add it to `.dockerignore`.",
    },
    RuleInfo {
        id: "shell.docker-run-env-secret",
        family: Family::Shell,
        severity: Severity::High,
        title: "`docker run -e NAME=value` with a literal secret (visible in `docker inspect` and shell history)",
        fix: "Pass the value as a file: `lockbox docker run --secret NAME -- …` (tmpfs at /run/secrets) and \
              `-e NAME_FILE=/run/secrets/NAME` for images that support it.",
    },
    RuleInfo {
        id: "shell.docker-build-arg-secret",
        family: Family::Shell,
        severity: Severity::High,
        title: "`--build-arg` with a secret-looking name (the value stays in `docker history`)",
        fix: "Use `docker build --secret id=NAME,src=FILE` (or `lockbox build --secret id=NAME`) with \
              `RUN --mount=type=secret,id=NAME` in the Dockerfile.",
    },
    RuleInfo {
        id: "content.kubernetes-secret-data",
        family: Family::Content,
        severity: Severity::Medium,
        title: "Kubernetes Secret manifest with an inline value",
        fix: "A Secret's `data` is base64, not encryption. Keep the manifest out of git: encrypt it (SOPS, \
              Sealed Secrets) or reference the value from a secret store (External Secrets), and rotate the value.",
    },
    RuleInfo {
        id: "content.pkcs12-file",
        family: Family::Content,
        severity: Severity::High,
        title: "PKCS#12 key store (`.p12`/`.pfx`): a private key and its certificate chain",
        fix: "Remove the file from the repository (and from git history), rotate the key, and deliver it at run \
              time: `lockbox secret create NAME - < FILE` and a `/run/secrets/NAME` file.",
    },
    RuleInfo {
        id: "image.env-secret",
        family: Family::Image,
        severity: Severity::High,
        title: "Image config `Env` holds a secret-looking variable with a value",
        fix: "Rebuild without `ENV NAME=…` for secrets; deliver them at run time as files (`lockbox docker run --secret`).",
    },
    RuleInfo {
        id: "image.history-build-arg",
        family: Family::Image,
        severity: Severity::Critical,
        title: "Image history records a secret build argument (`RUN |N NAME=value …`)",
        fix: "Rebuild with `RUN --mount=type=secret` and `docker build --secret` (or `lockbox build`), then delete \
              and re-push the leaked image, and rotate the secret: anyone who pulled it can read `docker history`.",
    },
    RuleInfo {
        id: "image.secret-file",
        family: Family::Image,
        severity: Severity::High,
        title: "Image layer contains a secret-looking file (key, `.env`, credentials)",
        fix: "Layers are immutable: deleting the file in a later layer does not remove it. Rebuild with a secret \
              mount instead of COPY, and rotate what was exposed.",
    },
    RuleInfo {
        id: "container.env-secret",
        family: Family::Container,
        severity: Severity::High,
        title: "Running container has a secret-looking environment variable with a literal value",
        fix: "Recreate the container with the secret as a file (`lockbox docker run --secret NAME`) and \
              `NAME_FILE=/run/secrets/NAME`.",
    },
];

/// Every rule, structural first, then content.
pub fn all_rules() -> Vec<RuleInfo> {
    let mut v: Vec<RuleInfo> = STRUCTURAL_RULES.to_vec();
    for r in CONTENT_RULES.iter() {
        v.push(RuleInfo {
            id: r.id,
            family: Family::Content,
            severity: r.severity,
            title: r.title,
            fix: CONTENT_FIX,
        });
    }
    v.push(RuleInfo {
        id: HIGH_ENTROPY_ID,
        family: Family::Content,
        severity: Severity::Low,
        title: "High-entropy string assigned in source",
        fix: CONTENT_FIX,
    });
    v
}

pub fn fix_for(id: &str) -> &'static str {
    STRUCTURAL_RULES
        .iter()
        .find(|r| r.id == id)
        .map_or(CONTENT_FIX, |r| r.fix)
}

pub fn info(id: &str) -> Option<RuleInfo> {
    all_rules().into_iter().find(|r| r.id == id)
}
