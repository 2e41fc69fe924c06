//! The content rules: provider token formats, key blocks, connection strings and the generic
//! keyword/entropy checks. Written for lockbox from the providers' published token formats.
//!
//! Every rule has keywords (matched by one Aho–Corasick automaton: case-insensitively when
//! written in lowercase, exactly when they hold an uppercase letter, as token prefixes do) and runs only on lines that contain one of them, the way gitleaks' `keywords`
//! work. The secret is the first capture group that participated in the match, or the whole
//! match when the pattern has no group.
//!
//! `sample` is a template from which tests and docs build a matching value at run time, so
//! no token-shaped literal sits in this source file: `{a:N}` N alphanumerics, `{h:N}`
//! lowercase hex, `{H:N}` uppercase hex, `{u:N}` uppercase letters and digits, `{l:N}`
//! lowercase letters and digits, `{d:N}` digits, `{b:N}` base64 characters, `{w:N}`
//! URL-safe base64 characters, `{c:N}` base32 (A–Z, 2–7), `{U:N}` uppercase letters,
//! `{B:N}` bech32 uppercase.

use crate::finding::Severity;

/// How a content rule is matched and filtered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A provider-specific token format: fires everywhere, including test fixtures.
    Provider,
    /// A multi-line block (private keys): matched on a window that starts at the keyword's
    /// line and extends past it.
    Block,
    /// Keyword-assignment and URL-credential heuristics: placeholder, reference and path
    /// allowlists apply.
    Generic,
    /// A provider whose tokens have no distinctive prefix: the value's shape counts only
    /// when the provider's name is the key it is assigned to (`DATADOG_TOKEN=…`,
    /// `"algoliaApiKey": "…"`). Placeholder checks apply; fixtures are not muted.
    Context,
}

/// A structural check a match must pass beyond its regex.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    None,
    /// GitHub/npm base62 body with a CRC-32 suffix: a token whose checksum does not verify
    /// is still reported (test fixtures and typos leak too), one severity lower.
    GithubCrc,
    /// Base64 of a JWT: decodes to `eyJ…` with at least one `.` separator.
    Base64Jwt,
}

#[derive(Debug)]
pub struct ContentRule {
    pub id: &'static str,
    pub provider: &'static str,
    pub title: &'static str,
    pub severity: Severity,
    pub kind: Kind,
    pub keywords: &'static [&'static str],
    pub pattern: &'static str,
    /// Minimum Shannon entropy (bits/byte) of the captured secret; 0 disables the check.
    pub min_entropy: f64,
    pub sample: &'static str,
    pub check: Check,
}

use Kind::{Block, Generic, Provider};
use Severity::{Critical, High, Low, Medium};

/// One `ContentRule` from positional fields; `check = …` at the end sets a structural check.
macro_rules! rule {
    ($id:literal, $prov:literal, $title:literal, $sev:expr, $kind:expr, [$($kw:literal),+], $pat:expr, $ent:literal, $sample:literal, check = $check:expr) => {
        $crate::content_rules::ContentRule {
            id: concat!("content.", $id),
            provider: $prov,
            title: $title,
            severity: $sev,
            kind: $kind,
            keywords: &[$($kw),+],
            pattern: $pat,
            min_entropy: $ent,
            sample: $sample,
            check: $check,
        }
    };
    ($id:literal, $prov:literal, $title:literal, $sev:expr, $kind:expr, [$($kw:literal),+], $pat:expr, $ent:literal, $sample:literal) => {
        rule!($id, $prov, $title, $sev, $kind, [$($kw),+], $pat, $ent, $sample, check = $crate::content_rules::Check::None)
    };
}
pub(crate) use rule;

/// Every content rule, in documentation order: the rules of this file, then the provider
/// rules of `provider_rules.rs` and `named_rules.rs`, then the syntax rules of
/// `syntax_rules.rs`.
pub static CONTENT_RULES: std::sync::LazyLock<Vec<&'static ContentRule>> =
    std::sync::LazyLock::new(|| {
        CORE_RULES
            .iter()
            .chain(crate::provider_rules::PROVIDER_RULES)
            .chain(crate::named_rules::NAMED_RULES)
            .chain(crate::syntax_rules::SYNTAX_RULES)
            .collect()
    });

/// The rules lockbox started with (clouds, source hosting, registries, messaging, keys and
/// the generic layer).
static CORE_RULES: &[ContentRule] = &[
    // --- AWS and other clouds -------------------------------------------------------------
    rule!(
        "aws-access-key-id",
        "AWS",
        "AWS access key ID",
        High,
        Provider,
        ["AKIA", "ASIA", "ABIA", "ACCA", "A3T"],
        r"\b((?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z2-7]{16})\b",
        3.0,
        "aws_access_key_id = AKIA{c:16}"
    ),
    rule!(
        "aws-secret-access-key",
        "AWS",
        "AWS secret access key assigned to an AWS-named key",
        Critical,
        Provider,
        ["aws"],
        r#"(?i)aws[\w.-]*?(?:secret|sk)[\w.-]*["']?\s*(?::=|=>|=|:)\s*["']?([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)"#,
        4.0,
        "AWS_SECRET_ACCESS_KEY={b:40}"
    ),
    rule!(
        "aws-mws-key",
        "AWS",
        "Amazon MWS auth token",
        High,
        Provider,
        ["amzn.mws."],
        r"(amzn\.mws\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})",
        3.0,
        "mws_token = amzn.mws.{h:8}-{h:4}-{h:4}-{h:4}-{h:12}"
    ),
    rule!(
        "gcp-api-key",
        "Google",
        "Google API key",
        High,
        Provider,
        ["AIza"],
        r"\b(AIza[0-9A-Za-z_-]{35})(?:[^0-9A-Za-z_-]|$)",
        3.5,
        "GOOGLE_API_KEY=AIza{w:35}"
    ),
    rule!(
        "gcp-oauth-client-secret",
        "Google",
        "Google OAuth client secret",
        High,
        Provider,
        ["GOCSPX-"],
        r"\b(GOCSPX-[A-Za-z0-9_-]{28})(?:[^A-Za-z0-9_-]|$)",
        3.5,
        "client_secret: GOCSPX-{w:28}"
    ),
    rule!(
        "gcp-oauth-access-token",
        "Google",
        "Google OAuth access token",
        High,
        Provider,
        ["ya29."],
        r"\b(ya29\.[0-9A-Za-z_-]{40,})",
        3.5,
        "Authorization: ya29.{w:60}"
    ),
    rule!(
        "gcp-service-account-key",
        "Google",
        "Google service-account key file (private_key_id)",
        Critical,
        Provider,
        ["private_key_id"],
        r#""private_key_id"\s*:\s*"([0-9a-f]{40})""#,
        3.0,
        "\"private_key_id\": \"{h:40}\","
    ),
    rule!(
        "azure-storage-account-key",
        "Azure",
        "Azure storage account key in a connection string",
        Critical,
        Provider,
        ["accountkey="],
        r"(?i)AccountKey=([A-Za-z0-9+/]{86}==)",
        4.0,
        "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={b:86}==;EndpointSuffix=core.windows.net"
    ),
    rule!(
        "azure-sas-token",
        "Azure",
        "Azure shared access signature",
        High,
        Provider,
        ["sig="],
        r"(?i)[?&]sv=20\d\d-\d\d-\d\d&[^\s'\x22]*?sig=([A-Za-z0-9%+/]{40,}(?:%3D|=){0,2})",
        3.5,
        "https://acme.blob.core.windows.net/c?sv=2022-11-02&ss=b&srt=o&sp=r&se=2030-01-01&sig={a:43}%3D"
    ),
    rule!(
        "azure-ad-client-secret",
        "Azure",
        "Microsoft Entra ID (Azure AD) client secret",
        High,
        Provider,
        ["q~"],
        r"(?:^|[^A-Za-z0-9_~.-])([A-Za-z0-9_~.-]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34})(?:[^A-Za-z0-9_~.-]|$)",
        3.0,
        "AZURE_CLIENT_SECRET={a:3}8Q~{a:34}"
    ),
    rule!(
        "alibaba-access-key-id",
        "Alibaba Cloud",
        "Alibaba Cloud AccessKey ID",
        Medium,
        Provider,
        ["LTAI"],
        r"\b(LTAI[A-Za-z0-9]{20})\b",
        3.0,
        "ALIBABA_ACCESS_KEY_ID=LTAI{a:20}"
    ),
    rule!(
        "digitalocean-token",
        "DigitalOcean",
        "DigitalOcean personal/OAuth/refresh token",
        High,
        Provider,
        ["dop_v1_", "doo_v1_", "dor_v1_"],
        r"\b(do[opr]_v1_[a-f0-9]{64})\b",
        3.0,
        "DIGITALOCEAN_TOKEN=dop_v1_{h:64}"
    ),
    rule!(
        "heroku-api-key",
        "Heroku",
        "Heroku API key",
        High,
        Provider,
        ["heroku", "HRKU-"],
        r"(?i)(?:heroku[\w.-]*[\s'\x22:=]+([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})|(HRKU-[A-Za-z0-9_-]{60}))",
        3.0,
        "HEROKU_API_KEY={h:8}-{h:4}-{h:4}-{h:4}-{h:12}"
    ),
    rule!(
        "flyio-token",
        "Fly.io",
        "Fly.io access token",
        High,
        Provider,
        ["fo1_", "fm1r_", "fm2_"],
        r"\b((?:fo1_[A-Za-z0-9_-]{43})|(?:fm[12][ar]?_[A-Za-z0-9+/]{100,}={0,3}))",
        3.5,
        "FLY_API_TOKEN=fo1_{w:43}"
    ),
    rule!(
        "cloudflare-origin-ca-key",
        "Cloudflare",
        "Cloudflare Origin CA key",
        High,
        Provider,
        ["v1.0-"],
        r"\b(v1\.0-[a-f0-9]{24}-[a-f0-9]{146})\b",
        3.0,
        "CF_ORIGIN_CA_KEY=v1.0-{h:24}-{h:146}"
    ),
    rule!(
        "databricks-token",
        "Databricks",
        "Databricks personal access token",
        High,
        Provider,
        ["dapi"],
        r"\b(dapi[a-f0-9]{32}(?:-\d)?)\b",
        3.0,
        "DATABRICKS_TOKEN=dapi{h:32}"
    ),
    rule!(
        "hashicorp-vault-token",
        "HashiCorp",
        "HashiCorp Vault service/batch token",
        Critical,
        Provider,
        ["hvs.", "hvb."],
        r"\b(hv[sb]\.[A-Za-z0-9_-]{24,})",
        3.5,
        "VAULT_TOKEN=hvs.{w:90}"
    ),
    rule!(
        "terraform-cloud-token",
        "HashiCorp",
        "Terraform Cloud / Enterprise API token",
        High,
        Provider,
        ["atlasv1"],
        r"\b([A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,70})",
        3.5,
        "TFE_TOKEN={a:14}.atlasv1.{w:67}"
    ),
    rule!(
        "pulumi-token",
        "Pulumi",
        "Pulumi access token",
        High,
        Provider,
        ["pul-"],
        r"\b(pul-[a-f0-9]{40})\b",
        3.0,
        "PULUMI_ACCESS_TOKEN=pul-{h:40}"
    ),
    rule!(
        "doppler-token",
        "Doppler",
        "Doppler API token",
        High,
        Provider,
        [
            "dp.pt.",
            "dp.st.",
            "dp.ct.",
            "dp.sa.",
            "dp.scim.",
            "dp.audit."
        ],
        r"\b(dp\.(?:pt|st|ct|sa|scim|audit)\.(?:[a-z0-9_-]{2,35}\.)?[A-Za-z0-9_-]{40,44})",
        3.5,
        "DOPPLER_TOKEN=dp.st.{w:43}"
    ),
    rule!(
        "planetscale-token",
        "PlanetScale",
        "PlanetScale password or token",
        High,
        Provider,
        ["pscale_"],
        r"\b(pscale_(?:tkn|pw|oauth)_[A-Za-z0-9_=.-]{32,64})",
        3.5,
        "DATABASE_PASSWORD=pscale_pw_{w:43}"
    ),
    rule!(
        "supabase-token",
        "Supabase",
        "Supabase access token",
        High,
        Provider,
        ["sbp_"],
        r"\b(sbp_[a-f0-9]{40})\b",
        3.0,
        "SUPABASE_ACCESS_TOKEN=sbp_{h:40}"
    ),
    // --- source hosting and CI ------------------------------------------------------------
    rule!(
        "github-pat",
        "GitHub",
        "GitHub personal access token (classic)",
        Critical,
        Provider,
        ["ghp_"],
        r"\b(ghp_[A-Za-z0-9]{36})\b",
        3.0,
        "GITHUB_TOKEN=ghp_{a:36}",
        check = Check::GithubCrc
    ),
    rule!(
        "github-fine-grained-pat",
        "GitHub",
        "GitHub fine-grained personal access token",
        Critical,
        Provider,
        ["github_pat_"],
        r"\b(github_pat_[A-Za-z0-9_]{82})\b",
        3.0,
        "token: github_pat_{a:22}_{a:59}"
    ),
    rule!(
        "github-oauth-token",
        "GitHub",
        "GitHub OAuth access token",
        Critical,
        Provider,
        ["gho_"],
        r"\b(gho_[A-Za-z0-9]{36})\b",
        3.0,
        "oauth = gho_{a:36}",
        check = Check::GithubCrc
    ),
    rule!(
        "github-app-token",
        "GitHub",
        "GitHub App user-to-server or installation token",
        Critical,
        Provider,
        ["ghu_", "ghs_"],
        r"\b((?:ghu|ghs)_[A-Za-z0-9]{36,255})\b",
        3.0,
        "GH_APP_TOKEN=ghs_{a:36}",
        check = Check::GithubCrc
    ),
    rule!(
        "github-refresh-token",
        "GitHub",
        "GitHub refresh token",
        High,
        Provider,
        ["ghr_"],
        r"\b(ghr_[A-Za-z0-9]{36,76})\b",
        3.0,
        "refresh_token=ghr_{a:76}"
    ),
    rule!(
        "gitlab-pat",
        "GitLab",
        "GitLab personal/project/group access token",
        Critical,
        Provider,
        ["glpat-"],
        r"\b(glpat-[A-Za-z0-9_-]{20,})",
        3.0,
        "GITLAB_TOKEN=glpat-{w:20}"
    ),
    rule!(
        "gitlab-pipeline-trigger-token",
        "GitLab",
        "GitLab pipeline trigger token",
        High,
        Provider,
        ["glptt-"],
        r"\b(glptt-[0-9a-f]{40})\b",
        3.0,
        "TRIGGER=glptt-{h:40}"
    ),
    rule!(
        "gitlab-runner-token",
        "GitLab",
        "GitLab runner authentication/registration token",
        High,
        Provider,
        ["glrt-", "GR1348941"],
        r"\b((?:glrt-|GR1348941)[A-Za-z0-9_-]{20,})",
        3.0,
        "token = \"glrt-{w:20}\""
    ),
    rule!(
        "gitlab-deploy-token",
        "GitLab",
        "GitLab deploy token",
        High,
        Provider,
        ["gldt-"],
        r"\b(gldt-[A-Za-z0-9_-]{20,})",
        3.0,
        "DEPLOY_TOKEN=gldt-{w:20}"
    ),
    rule!(
        "bitbucket-app-password",
        "Atlassian",
        "Bitbucket app password",
        High,
        Provider,
        ["ATBB"],
        r"\b(ATBB[A-Za-z0-9_=.-]{28,})",
        3.5,
        "BITBUCKET_APP_PASSWORD=ATBB{a:32}"
    ),
    rule!(
        "atlassian-api-token",
        "Atlassian",
        "Atlassian (Jira/Confluence) API token",
        High,
        Provider,
        ["ATATT3"],
        r"\b(ATATT3[A-Za-z0-9_=-]{180,})",
        3.5,
        "JIRA_API_TOKEN=ATATT3xFfGF0{w:180}"
    ),
    rule!(
        "sourcegraph-token",
        "Sourcegraph",
        "Sourcegraph access token",
        High,
        Provider,
        ["sgp_"],
        r"\b(sgp_(?:[a-fA-F0-9]{16}_|local_)?[a-fA-F0-9]{40})\b",
        3.0,
        "SRC_ACCESS_TOKEN=sgp_{h:40}"
    ),
    rule!(
        "circleci-token",
        "CircleCI",
        "CircleCI personal API token",
        High,
        Provider,
        ["CCIPAT_"],
        r"\b(CCIPAT_[A-Za-z0-9]{22}_[a-f0-9]{40})\b",
        3.0,
        "CIRCLE_TOKEN=CCIPAT_{a:22}_{h:40}"
    ),
    rule!(
        "linear-api-key",
        "Linear",
        "Linear API key",
        Medium,
        Provider,
        ["lin_api_"],
        r"\b(lin_api_[A-Za-z0-9]{40})\b",
        3.0,
        "LINEAR_API_KEY=lin_api_{a:40}"
    ),
    // --- package registries -----------------------------------------------------------------
    rule!(
        "npm-access-token",
        "npm",
        "npm access token",
        Critical,
        Provider,
        ["npm_"],
        r"\b(npm_[A-Za-z0-9]{36})\b",
        3.0,
        "NPM_TOKEN=npm_{a:36}",
        check = Check::GithubCrc
    ),
    rule!(
        "npmrc-auth-token",
        "npm",
        "Registry auth token in an .npmrc line",
        High,
        Provider,
        ["_authtoken", "_auth=", "_password="],
        r"(?i)(?:^|[\s'\x22])//[^\s'\x22]+/:(?:_authToken|_auth|_password)\s*=\s*([^\s'\x22$][^\s'\x22]{7,})",
        3.0,
        "//registry.npmjs.org/:_authToken={l:36}"
    ),
    rule!(
        "pypi-token",
        "PyPI",
        "PyPI upload token",
        Critical,
        Provider,
        ["pypi-AgEIcHlwaS5vcmc"],
        r"\b(pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,})",
        3.5,
        "password = pypi-AgEIcHlwaS5vcmc{w:70}"
    ),
    rule!(
        "rubygems-api-key",
        "RubyGems",
        "RubyGems API key",
        High,
        Provider,
        ["rubygems_"],
        r"\b(rubygems_[a-f0-9]{48})\b",
        3.0,
        "GEM_HOST_API_KEY=rubygems_{h:48}"
    ),
    rule!(
        "dockerhub-pat",
        "Docker Hub",
        "Docker Hub personal access token",
        Critical,
        Provider,
        ["dckr_pat_", "dckr_oat_"],
        r"\b(dckr_(?:pat|oat)_[A-Za-z0-9_-]{27,})",
        3.0,
        "DOCKERHUB_TOKEN=dckr_pat_{w:27}"
    ),
    rule!(
        "docker-config-auth",
        "Docker",
        "Registry credentials in a Docker config.json `auth` field",
        High,
        Provider,
        ["\"auth\""],
        r#""auth"\s*:\s*"([A-Za-z0-9+/]{12,}={0,2})""#,
        3.0,
        "{\"auths\": {\"registry.example.com\": {\"auth\": \"{b:32}\"}}}"
    ),
    rule!(
        "clojars-token",
        "Clojars",
        "Clojars deploy token",
        Medium,
        Provider,
        ["CLOJARS_"],
        r"\b(CLOJARS_[a-z0-9]{60})\b",
        3.0,
        "CLOJARS_PASSWORD=CLOJARS_{l:60}"
    ),
    // --- messaging and collaboration --------------------------------------------------------
    rule!(
        "slack-bot-token",
        "Slack",
        "Slack bot token",
        High,
        Provider,
        ["xoxb-"],
        r"\b(xoxb-[0-9]{8,14}-(?:[0-9]{8,14}-)?[A-Za-z0-9]{18,})",
        3.0,
        "SLACK_BOT_TOKEN=xoxb-{d:12}-{d:13}-{a:24}"
    ),
    rule!(
        "slack-user-token",
        "Slack",
        "Slack user or workspace token",
        High,
        Provider,
        [
            "xoxp-", "xoxe-", "xoxa-", "xoxs-", "xoxr-", "xoxo-", "xoxe."
        ],
        r"\b(xox[pears]-(?:[0-9]{8,14}-){2,3}[A-Za-z0-9]{24,64}|xox[os]-\d+-\d+-\d+-[a-fA-F0-9]{8,}|xox[ar]-(?:\d-)?[0-9a-zA-Z]{8,48}|xoxe\.xox[bp]-\d-[A-Z0-9]{160,170}|xoxe-\d-[A-Z0-9]{140,150})",
        3.0,
        "SLACK_TOKEN=xoxp-{d:12}-{d:12}-{d:13}-{h:32}"
    ),
    rule!(
        "slack-app-token",
        "Slack",
        "Slack app-level token",
        High,
        Provider,
        ["xapp-"],
        r"\b(xapp-\d-[A-Z0-9]{9,12}-\d{10,14}-[a-f0-9]{64})\b",
        3.0,
        "SLACK_APP_TOKEN=xapp-1-{u:11}-{d:13}-{h:64}"
    ),
    rule!(
        "slack-webhook-url",
        "Slack",
        "Slack incoming-webhook URL",
        Medium,
        Provider,
        ["hooks.slack.com"],
        r"(hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9]{8,12}/[A-Za-z0-9]{8,12}/(?:[0-9]{6,20}/)?[A-Za-z0-9]{20,})",
        3.0,
        "url: https://hooks.slack.com/services/T{u:10}/B{u:10}/{a:24}"
    ),
    rule!(
        "discord-webhook-url",
        "Discord",
        "Discord webhook URL",
        Medium,
        Provider,
        ["discord.com/api/webhooks", "discordapp.com/api/webhooks"],
        r"(discord(?:app)?\.com/api/webhooks/\d{17,20}/[A-Za-z0-9_-]{60,70})",
        3.0,
        "DISCORD_WEBHOOK=https://discord.com/api/webhooks/{d:18}/{w:68}"
    ),
    rule!(
        "telegram-bot-token",
        "Telegram",
        "Telegram bot token",
        High,
        Provider,
        [":A"],
        r"(?:^|[^0-9A-Za-z_:-])([0-9]{5,16}:A[A-Za-z0-9_-]{34})(?:[^A-Za-z0-9_-]|$)",
        3.0,
        "TELEGRAM_BOT_TOKEN={d:10}:AA{w:33}"
    ),
    rule!(
        "twilio-api-key",
        "Twilio",
        "Twilio API key SID",
        High,
        Provider,
        ["SK"],
        r"\b(SK[0-9a-fA-F]{32})\b",
        3.0,
        "TWILIO_API_KEY=SK{h:32}"
    ),
    rule!(
        "sendgrid-api-key",
        "SendGrid",
        "SendGrid API key",
        Critical,
        Provider,
        ["SG."],
        r"\b(SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})(?:[^A-Za-z0-9_-]|$)",
        3.5,
        "SENDGRID_API_KEY=SG.{w:22}.{w:43}"
    ),
    rule!(
        "mailgun-api-key",
        "Mailgun",
        "Mailgun private API key",
        High,
        Provider,
        ["key-"],
        r"\b(key-[0-9a-f]{32})\b",
        3.0,
        "MAILGUN_API_KEY=key-{h:32}"
    ),
    rule!(
        "mailchimp-api-key",
        "Mailchimp",
        "Mailchimp API key",
        High,
        Provider,
        ["-us"],
        r"\b([0-9a-f]{32}-us[0-9]{1,2})\b",
        3.0,
        "MAILCHIMP_KEY={h:32}-us14"
    ),
    rule!(
        "postman-api-key",
        "Postman",
        "Postman API key",
        High,
        Provider,
        ["PMAK-"],
        r"\b(PMAK-[a-f0-9]{24}-[a-f0-9]{34})\b",
        3.0,
        "POSTMAN_API_KEY=PMAK-{h:24}-{h:34}"
    ),
    // --- payments and commerce --------------------------------------------------------------
    rule!(
        "stripe-secret-key",
        "Stripe",
        "Stripe live secret or restricted key",
        Critical,
        Provider,
        ["sk_live_", "rk_live_"],
        r"\b([rs]k_live_[A-Za-z0-9]{24,247})\b",
        3.0,
        "STRIPE_SECRET_KEY=sk_live_{a:99}"
    ),
    rule!(
        "stripe-test-secret-key",
        "Stripe",
        "Stripe test-mode secret key",
        Low,
        Provider,
        ["sk_test_", "rk_test_"],
        r"\b([rs]k_test_[A-Za-z0-9]{24,247})\b",
        3.0,
        "STRIPE_SECRET_KEY=sk_test_{a:99}"
    ),
    rule!(
        "stripe-webhook-secret",
        "Stripe",
        "Stripe webhook signing secret",
        High,
        Provider,
        ["whsec_"],
        r"\b(whsec_[A-Za-z0-9+/]{32,})",
        3.0,
        "STRIPE_WEBHOOK_SECRET=whsec_{a:32}"
    ),
    rule!(
        "square-access-token",
        "Square",
        "Square access token",
        High,
        Provider,
        ["sq0atp-", "EAAA"],
        r"\b((?:sq0atp-[A-Za-z0-9_-]{22,60})|(?:EAAA[A-Za-z0-9_-]{22,60}))(?:[^A-Za-z0-9_-]|$)",
        3.5,
        "SQUARE_ACCESS_TOKEN=EAAA{w:60}"
    ),
    rule!(
        "square-oauth-secret",
        "Square",
        "Square OAuth application secret",
        High,
        Provider,
        ["sq0csp-"],
        r"\b(sq0csp-[A-Za-z0-9_-]{43})(?:[^A-Za-z0-9_-]|$)",
        3.5,
        "SQUARE_SECRET=sq0csp-{w:43}"
    ),
    rule!(
        "shopify-token",
        "Shopify",
        "Shopify access token or shared secret",
        High,
        Provider,
        ["shpat_", "shpca_", "shppa_", "shpss_"],
        r"\b(shp(?:at|ca|pa|ss)_[a-zA-Z0-9]{32})\b",
        3.0,
        "SHOPIFY_TOKEN=shpat_{h:32}"
    ),
    rule!(
        "easypost-api-key",
        "EasyPost",
        "EasyPost production API key",
        Medium,
        Provider,
        ["EZAK", "EZTK"],
        r"\b(EZ[AT]K[A-Za-z0-9]{54})\b",
        3.5,
        "EASYPOST_API_KEY=EZAK{a:54}"
    ),
    // --- AI and data ------------------------------------------------------------------------
    rule!(
        "openai-api-key",
        "OpenAI",
        "OpenAI API key",
        Critical,
        Provider,
        ["T3BlbkFJ"],
        r"\b(sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}T3BlbkFJ[A-Za-z0-9_-]{20,})",
        3.5,
        "OPENAI_API_KEY=sk-proj-{w:48}T3BlbkFJ{w:48}"
    ),
    rule!(
        "anthropic-api-key",
        "Anthropic",
        "Anthropic API key",
        Critical,
        Provider,
        ["sk-ant-"],
        r"\b(sk-ant-(?:api|admin)\d\d-[A-Za-z0-9_-]{80,})",
        3.5,
        "ANTHROPIC_API_KEY=sk-ant-api03-{w:93}AA"
    ),
    rule!(
        "huggingface-token",
        "Hugging Face",
        "Hugging Face access token",
        High,
        Provider,
        ["hf_"],
        r"\b(hf_[A-Za-z]{34})\b",
        3.5,
        "HF_TOKEN=hf_{U:17}{U:17}"
    ),
    rule!(
        "newrelic-user-key",
        "New Relic",
        "New Relic user API key",
        High,
        Provider,
        ["NRAK-"],
        r"\b(NRAK-[A-Z0-9]{27})\b",
        3.0,
        "NEW_RELIC_API_KEY=NRAK-{u:27}"
    ),
    rule!(
        "grafana-cloud-token",
        "Grafana",
        "Grafana Cloud API token",
        High,
        Provider,
        ["glc_"],
        r"\b(glc_[A-Za-z0-9+/]{32,400}={0,2})",
        3.5,
        "GRAFANA_CLOUD_TOKEN=glc_{b:80}"
    ),
    rule!(
        "grafana-service-account-token",
        "Grafana",
        "Grafana service-account token",
        High,
        Provider,
        ["glsa_"],
        r"\b(glsa_[A-Za-z0-9]{32}_[a-f0-9]{8})\b",
        3.0,
        "GRAFANA_TOKEN=glsa_{a:32}_{h:8}"
    ),
    rule!(
        "sentry-token",
        "Sentry",
        "Sentry auth token",
        High,
        Provider,
        ["sntrys_", "sntryu_"],
        r"\b((?:sntrys_[A-Za-z0-9+/=_]{60,})|(?:sntryu_[a-f0-9]{64}))",
        3.5,
        "SENTRY_AUTH_TOKEN=sntryu_{h:64}"
    ),
    rule!(
        "dynatrace-token",
        "Dynatrace",
        "Dynatrace API token",
        High,
        Provider,
        ["dt0c01."],
        r"\b(dt0c01\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{64})\b",
        3.5,
        "DT_API_TOKEN=dt0c01.{u:24}.{u:64}"
    ),
    rule!(
        "mapbox-secret-token",
        "Mapbox",
        "Mapbox secret access token",
        Medium,
        Provider,
        ["sk.eyJ"],
        r"\b(sk\.eyJ[A-Za-z0-9_-]{50,}\.[A-Za-z0-9_-]{20,})",
        3.5,
        "MAPBOX_TOKEN=sk.eyJ{w:60}.{w:22}"
    ),
    rule!(
        "age-secret-key",
        "age",
        "age encryption secret key",
        Critical,
        Provider,
        ["AGE-SECRET-KEY-1"],
        r"\b(AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58})\b",
        3.0,
        "AGE-SECRET-KEY-1{B:58}"
    ),
    // --- keys, tokens and credentials in standard formats ----------------------------------
    rule!(
        "private-key",
        "generic",
        "Private key block (PEM/OpenSSH)",
        Critical,
        Block,
        ["private key-----"],
        r"(-----BEGIN[ A-Z0-9_-]{0,40}PRIVATE KEY-----[\s\\n]*(?:[A-Za-z0-9-]+:[^\n]*\n)*(?:[\s\\n]*[A-Za-z0-9+/=]{40,})+)",
        0.0,
        "-----BEGIN OPENSSH PRIVATE KEY-----\n{b:70}\n{b:70}\n-----END OPENSSH PRIVATE KEY-----"
    ),
    rule!(
        "pgp-private-key-block",
        "generic",
        "PGP private key block",
        Critical,
        Block,
        ["begin pgp private key block"],
        r"(-----BEGIN PGP PRIVATE KEY BLOCK-----\s*(?:[A-Za-z]+:[^\n]*\n)*\s*(?:[A-Za-z0-9+/=]{40,}\s*)+)",
        0.0,
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{b:64}\n{b:64}\n-----END PGP PRIVATE KEY BLOCK-----"
    ),
    rule!(
        "putty-private-key",
        "generic",
        "PuTTY private key file",
        Critical,
        Block,
        ["PuTTY-User-Key-File-"],
        r"(PuTTY-User-Key-File-\d: [\s\S]{0,400}?Private-Lines: \d+\s*[A-Za-z0-9+/=]{40,})",
        0.0,
        "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: k\nPublic-Lines: 1\n{b:60}\nPrivate-Lines: 1\n{b:60}"
    ),
    rule!(
        "jwt",
        "generic",
        "JSON Web Token",
        Medium,
        Provider,
        ["eyJ"],
        r"\b(eyJ[A-Za-z0-9_-]{15,}\.eyJ[A-Za-z0-9_-]{15,}\.[A-Za-z0-9_-]{20,})",
        3.5,
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJ{w:40}.{w:43}"
    ),
    rule!(
        "connection-string-password",
        "generic",
        "Database or broker URL with an inline password",
        High,
        Generic,
        ["://"],
        r"(?i)\b(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|redis|rediss|amqps?|mssql|sqlserver|oracle|cockroachdb|clickhouse|nats|kafka|ldaps?|jdbc:[a-z]+)://[^\s:/@'\x22]+:([^\s/@'\x22]{3,})@[A-Za-z0-9_.-]+",
        0.0,
        "DATABASE_URL=postgres://app:{a:16}@db.internal:5432/app"
    ),
    rule!(
        "url-basic-auth",
        "generic",
        "HTTP/FTP URL with inline credentials",
        High,
        Generic,
        ["://"],
        r"(?i)\b(?:https?|ftps?|sftp|git\+https?|smtps?)://[^\s:/@'\x22]+:([^\s/@'\x22]{3,})@[A-Za-z0-9_.-]+",
        0.0,
        "pip install --index-url https://deploy:{a:20}@pypi.corp.example/simple pkg"
    ),
    rule!(
        "dotnet-connection-string",
        "generic",
        "ADO.NET / ODBC connection string with a password",
        High,
        Generic,
        ["password=", "pwd="],
        r"(?i)(?:server|data source|host|address)\s*=[^;\x22']+;.*?\b(?:password|pwd)\s*=\s*([^;\x22'\s]{3,128})",
        0.0,
        "Server=sql1;Database=app;User Id=app;Password={a:18};"
    ),
    rule!(
        "authorization-basic",
        "generic",
        "HTTP Basic Authorization header value",
        High,
        Generic,
        ["basic "],
        r"(?i)authorization[\x22']?\s*[:=]\s*[\x22']?basic\s+([A-Za-z0-9+/]{12,}={0,2})",
        3.0,
        "curl -H 'Authorization: Basic {b:28}' https://api.internal"
    ),
    rule!(
        "authorization-bearer",
        "generic",
        "HTTP Bearer Authorization header with a literal token",
        High,
        Generic,
        ["bearer "],
        r"(?i)authorization[\x22']?\s*[:=]\s*[\x22']?bearer\s+([A-Za-z0-9._~+/-]{20,}=*)",
        3.5,
        "curl -H \"Authorization: Bearer {a:40}\" https://api.internal"
    ),
    rule!(
        "cli-password-flag",
        "generic",
        "Password passed on a command line (sshpass, mysql, --password)",
        High,
        Generic,
        ["sshpass", "--password", "mysql", "mysqladmin"],
        r"(?i)(?:sshpass\s+-p\s*|--password[= ]|\bmysql(?:admin|dump)?\b[^\n|;&]*?\s-p)['\x22]?([^\s'\x22$;|&]{4,128})",
        0.0,
        "sshpass -p '{a:14}' ssh deploy@host"
    ),
    rule!(
        "htpasswd-hash",
        "generic",
        "htpasswd/bcrypt password hash",
        Medium,
        Provider,
        ["$2y$", "$2b$", "$2a$", "$apr1$"],
        r"(?m)^[A-Za-z0-9_.-]+:(\$(?:2[aby]\$\d\d\$[./A-Za-z0-9]{53}|apr1\$[./A-Za-z0-9]{1,8}\$[./A-Za-z0-9]{22}))",
        0.0,
        "admin:$2y$10${a:53}"
    ),
    rule!(
        "secret-assignment",
        "generic",
        "Secret-named variable, key or flag assigned a literal value",
        Medium,
        Generic,
        [
            "passw",
            "passphrase",
            "_pass",
            "-pass",
            ".pass",
            "pass=",
            "pass:",
            "pass\"",
            "pass'",
            "pwd",
            "secret",
            "token",
            "apikey",
            "api_key",
            "api-key",
            "_key",
            "-key",
            "credential",
            "auth",
            "salt",
            "private_key",
            "private-key",
            "privatekey"
        ],
        r#"(?i)([\w.-]*(?:pass(?:w(?:or)?d)?|pwd|pword|passphrase|secret|token|api[_-]?key|apikey|_key|-key|credentials?|auth|salt|private[_-]?key)[\w.-]*)(?:["']\])?["']?(?:\s+(?:string|String|str|\[\]byte))?\s*(?::::=|::=|:=|\.=|=>|==?|:|\s+\?=|\s+=)\s*(?:"([^"\r\n]{3,})"|'([^'\r\n]{3,})'|`([^`\r\n]{3,})`|([^\s"'`,;#)\]}]{3,}))"#,
        0.0,
        "db_password = \"{a:12}\""
    ),
];

/// The id of the ungated high-entropy string check (not in the regex table: it is a byte scan).
pub const HIGH_ENTROPY_ID: &str = "content.high-entropy-string";
