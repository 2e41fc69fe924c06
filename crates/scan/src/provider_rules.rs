//! Provider rules beyond the core set: the credential formats other maintained scanners
//! ship, each written from the provider's documented format. Two shapes:
//!
//! * the token carries its own prefix (`duffel_live_`, `xkeysib-`), so it is
//!   reported wherever it appears. Those whose pattern starts with the name they are assigned to (Discord bot tokens,
//!   Vault's legacy `s.` tokens, Lob, Sidekiq, NuGet passwords) are `Kind::Context`: they
//!   run on their own instead of inside the shared automaton, where a leading counted
//!   repetition multiplies the lazy DFA's states;
//! * the `named_rules.rs` rules: the token is a bare hex/alphanumeric string, so it counts
//!   only as the value of a key that names the provider.
//!
//! `sample` is a template (see `content_rules.rs`) that the tests expand into a matching value.

use crate::content_rules::{ContentRule, Kind, rule};
use crate::finding::Severity::{Critical, High, Medium};

pub static PROVIDER_RULES: &[ContentRule] = &[
    rule!(
        "adafruit-io-key",
        "Adafruit",
        "Adafruit IO key",
        High,
        Kind::Provider,
        ["aio_"],
        r"\b(aio_[A-Za-z0-9]{28})\b",
        3.0,
        "ADAFRUIT_IO_KEY=aio_{a:28}"
    ),
    rule!(
        "adobe-client-secret",
        "Adobe",
        "Adobe client secret",
        High,
        Kind::Provider,
        ["p8e-"],
        r"\b(p8e-[A-Za-z0-9_-]{32})(?:[^A-Za-z0-9_-]|$)",
        3.0,
        "secret = p8e-{w:32}"
    ),
    rule!(
        "authress-service-key",
        "Authress",
        "Authress service client access key",
        High,
        Kind::Provider,
        [".acc_", ".acc-"],
        r"(?i)\b((?:sc|ext|scauth|authress)_[a-z0-9]{5,30}\.[a-z0-9]{4,6}\.acc[_-][a-z0-9-]{10,32}\.[a-z0-9+/_=-]{30,120})",
        3.5,
        "AUTHRESS_KEY=sc_{l:20}.{l:5}.acc_{l:20}.{w:64}"
    ),
    rule!(
        "contentful-pat",
        "Contentful",
        "Contentful personal access token",
        High,
        Kind::Provider,
        ["CFPAT-"],
        r"\b(CFPAT-[A-Za-z0-9_-]{43})(?:[^A-Za-z0-9_-]|$)",
        3.5,
        "token: CFPAT-{w:43}"
    ),
    rule!(
        "duffel-api-token",
        "Duffel",
        "Duffel API token",
        High,
        Kind::Provider,
        ["duffel_"],
        r"\b(duffel_(?:test|live)_[A-Za-z0-9_=-]{43})",
        3.5,
        "DUFFEL_TOKEN=duffel_live_{w:43}"
    ),
    rule!(
        "facebook-page-token",
        "Facebook",
        "Facebook page/user access token",
        High,
        Kind::Provider,
        ["EAAM", "EAAC"],
        r"\b(EAA[MC][A-Za-z0-9]{100,})",
        3.5,
        "token = EAAC{a:120}"
    ),
    rule!(
        "flutterwave-key",
        "Flutterwave",
        "Flutterwave secret, public or encryption key",
        High,
        Kind::Provider,
        ["FLWSECK", "FLWPUBK"],
        r"\b(FLW(?:SEC|PUB)K_TEST-[a-hA-H0-9]{32}-X|FLWSECK_TEST[a-hA-H0-9]{12})\b",
        3.0,
        "FLW_SECRET_KEY=FLWSECK_TEST-{h:32}-X"
    ),
    rule!(
        "frameio-token",
        "Frame.io",
        "Frame.io API token",
        High,
        Kind::Provider,
        ["fio-u-"],
        r"\b(fio-u-[A-Za-z0-9_=-]{64})",
        3.5,
        "FRAMEIO_TOKEN=fio-u-{w:64}"
    ),
    rule!(
        "harness-token",
        "Harness",
        "Harness personal or service-account token",
        High,
        Kind::Provider,
        ["pat.", "sat."],
        r"\b((?:pat|sat)\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{20})\b",
        3.5,
        "HARNESS_API_KEY=pat.{w:22}.{a:24}.{a:20}"
    ),
    rule!(
        "hubspot-private-app-token",
        "HubSpot",
        "HubSpot private app token",
        High,
        Kind::Provider,
        ["pat-na", "pat-eu", "pat-ap"],
        r"\b(pat-(?:na|eu|ap)\d-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b",
        3.0,
        "HUBSPOT_TOKEN=pat-na1-{h:8}-{h:4}-{h:4}-{h:4}-{h:12}"
    ),
    rule!(
        "jfrog-api-key",
        "JFrog",
        "JFrog Artifactory API key",
        High,
        Kind::Provider,
        ["AKCp"],
        r"\b(AKCp[A-Za-z0-9]{69})\b",
        3.5,
        "ARTIFACTORY_API_KEY=AKCp{a:69}"
    ),
    rule!(
        "jfrog-reference-token",
        "JFrog",
        "JFrog reference (identity) token",
        High,
        Kind::Provider,
        ["cmVmdGtuOjAxOj"],
        r"\b(cmVmdGtuOjAxOj[A-Za-z0-9]{30,})",
        3.5,
        "password: cmVmdGtuOjAxOjE3{a:48}"
    ),
    rule!(
        "launchdarkly-key",
        "LaunchDarkly",
        "LaunchDarkly SDK, mobile or API key",
        High,
        Kind::Provider,
        ["sdk-", "api-", "mob-"],
        r"\b((?:sdk|api|mob)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b",
        3.0,
        "LAUNCHDARKLY_SDK_KEY=sdk-{h:8}-{h:4}-{h:4}-{h:4}-{h:12}"
    ),
    rule!(
        "lob-api-key",
        "Lob",
        "Lob API key",
        High,
        Kind::Context,
        ["live_pub_", "test_pub_", "lob_", "lob-"],
        r"(?i)(?:\b((?:live|test)_pub_[a-f0-9]{31})\b|lob[\w.-]{0,20}[\s'\x22]{0,3}[:=][\s'\x22]{0,3}((?:live|test)_[a-f0-9]{35})\b)",
        3.0,
        "LOB_API_KEY=live_{h:35}"
    ),
    rule!(
        "microsoft-teams-webhook",
        "Microsoft Teams",
        "Microsoft Teams incoming-webhook URL",
        Medium,
        Kind::Provider,
        ["webhook.office.com", "outlook.office.com/webhook"],
        r"(?i)(https://[a-z0-9-]+\.webhook\.office\.com/webhookb2/[a-z0-9-]{36}@[a-z0-9-]{36}/IncomingWebhook/[a-z0-9]{32}/[a-z0-9-]{36}|https://outlook\.office\.com/webhook/[a-z0-9-]{36}@[a-z0-9-]{36}/IncomingWebhook/[a-z0-9]{32}/[a-z0-9-]{36})",
        3.0,
        "url: https://acme.webhook.office.com/webhookb2/{h:8}-{h:4}-{h:4}-{h:4}-{h:12}@{h:8}-{h:4}-{h:4}-{h:4}-{h:12}/IncomingWebhook/{h:32}/{h:8}-{h:4}-{h:4}-{h:4}-{h:12}"
    ),
    rule!(
        "netlify-pat",
        "Netlify",
        "Netlify personal access token",
        High,
        Kind::Provider,
        ["nfp_"],
        r"\b(nfp_[A-Za-z0-9]{36})\b",
        3.5,
        "NETLIFY_AUTH_TOKEN=nfp_{a:36}"
    ),
    rule!(
        "newrelic-browser-key",
        "New Relic",
        "New Relic browser API key",
        Medium,
        Kind::Provider,
        ["NRJS-"],
        r"\b(NRJS-[a-f0-9]{19})\b",
        3.0,
        "licenseKey: NRJS-{h:19}"
    ),
    rule!(
        "newrelic-insert-key",
        "New Relic",
        "New Relic insert key",
        High,
        Kind::Provider,
        ["NRII-"],
        r"\b(NRII-[A-Za-z0-9_-]{32})",
        3.5,
        "NEW_RELIC_INSERT_KEY=NRII-{w:32}"
    ),
    rule!(
        "notion-token",
        "Notion",
        "Notion integration token",
        High,
        Kind::Provider,
        ["ntn_", "secret_"],
        r"\b(ntn_[0-9]{11}[A-Za-z0-9]{35}|secret_[A-Za-z0-9]{43})\b",
        3.5,
        "NOTION_TOKEN=ntn_{d:11}{a:35}"
    ),
    rule!(
        "nuget-api-key",
        "NuGet",
        "NuGet.org API key",
        High,
        Kind::Provider,
        ["oy2"],
        r"\b(oy2[a-z0-9]{43})\b",
        3.5,
        "<add key=\"https://api.nuget.org/v3/index.json\" value=\"oy2{l:43}\" />"
    ),
    rule!(
        "nuget-config-password",
        "NuGet",
        "Password in a NuGet.Config packageSourceCredentials entry",
        High,
        Kind::Context,
        ["password\""],
        r#"(?i)<add\s+key\s*=\s*"(?:ClearText)?Password"\s+value\s*=\s*"([^"%$]{4,})""#,
        0.0,
        "<add key=\"ClearTextPassword\" value=\"{a:20}\" />"
    ),
    rule!(
        "onepassword-secret-key",
        "1Password",
        "1Password account secret key",
        Critical,
        Kind::Provider,
        ["A3-"],
        r"\b(A3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5})\b",
        3.0,
        "Secret Key: A3-{u:6}-{u:11}-{u:5}-{u:5}-{u:5}"
    ),
    rule!(
        "onepassword-service-account-token",
        "1Password",
        "1Password service-account token",
        Critical,
        Kind::Provider,
        ["ops_eyJ"],
        r"\b(ops_eyJ[A-Za-z0-9+/]{250,}={0,3})",
        3.5,
        "OP_SERVICE_ACCOUNT_TOKEN=ops_eyJ{b:260}"
    ),
    rule!(
        "openshift-token",
        "OpenShift",
        "OpenShift user token",
        High,
        Kind::Provider,
        ["sha256~"],
        r"(sha256~[A-Za-z0-9_-]{43})(?:[^A-Za-z0-9_-]|$)",
        3.5,
        "token: sha256~{w:43}"
    ),
    rule!(
        "perplexity-api-key",
        "Perplexity",
        "Perplexity API key",
        High,
        Kind::Provider,
        ["pplx-"],
        r"\b(pplx-[A-Za-z0-9]{48})\b",
        3.5,
        "PERPLEXITY_API_KEY=pplx-{a:48}"
    ),
    rule!(
        "plaid-access-token",
        "Plaid",
        "Plaid access token",
        High,
        Kind::Provider,
        [
            "access-sandbox-",
            "access-development-",
            "access-production-"
        ],
        r"\b(access-(?:sandbox|development|production)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b",
        3.0,
        "access_token = access-production-{h:8}-{h:4}-{h:4}-{h:4}-{h:12}"
    ),
    rule!(
        "sendinblue-api-key",
        "Sendinblue",
        "Sendinblue (Brevo) API or SMTP key",
        High,
        Kind::Provider,
        ["xkeysib-", "xsmtpsib-"],
        r"\b(x(?:keysib|smtpsib)-[a-f0-9]{64}-[A-Za-z0-9]{16})\b",
        3.5,
        "BREVO_API_KEY=xkeysib-{h:64}-{a:16}"
    ),
    rule!(
        "settlemint-token",
        "SettleMint",
        "SettleMint personal, application or service token",
        High,
        Kind::Provider,
        ["sm_pat_", "sm_aat_", "sm_sat_"],
        r"\b(sm_(?:pat|aat|sat)_[A-Za-z0-9]{16})\b",
        3.0,
        "SETTLEMINT_TOKEN=sm_pat_{a:16}"
    ),
    rule!(
        "shippo-api-token",
        "Shippo",
        "Shippo API token",
        High,
        Kind::Provider,
        ["shippo_"],
        r"\b(shippo_(?:live|test)_[a-fA-F0-9]{40})\b",
        3.0,
        "SHIPPO_API_TOKEN=shippo_live_{h:40}"
    ),
    rule!(
        "sidekiq-credentials",
        "Sidekiq",
        "Sidekiq Pro/Enterprise gem server credentials",
        High,
        Kind::Context,
        ["contribsys__com", "contribsys.com"],
        r"(?i)(?:BUNDLE_(?:ENTERPRISE|GEMS)__CONTRIBSYS__COM[\s'\x22]*[:=][\s'\x22]*([a-f0-9]{8}:[a-f0-9]{8})|https?://([a-f0-9]{8}:[a-f0-9]{8})@(?:gems|enterprise)\.contribsys\.com)",
        3.0,
        "BUNDLE_ENTERPRISE__CONTRIBSYS__COM: \"{h:8}:{h:8}\""
    ),
    rule!(
        "sonarqube-token",
        "SonarQube",
        "SonarQube user, project or analysis token",
        High,
        Kind::Provider,
        ["squ_", "sqp_", "sqa_"],
        r"\b((?:squ|sqp|sqa)_[a-f0-9]{40})\b",
        3.0,
        "SONAR_TOKEN=squ_{h:40}"
    ),
    rule!(
        "tailscale-key",
        "Tailscale",
        "Tailscale auth or API key",
        High,
        Kind::Provider,
        ["tskey-"],
        r"\b(tskey-(?:[a-z]+-)?[A-Za-z0-9]{6,}-[A-Za-z0-9]{10,})",
        3.5,
        "TS_AUTHKEY=tskey-auth-k{a:10}CNTRL-{a:32}"
    ),
    rule!(
        "twitter-bearer-token",
        "Twitter",
        "Twitter (X) app bearer token",
        High,
        Kind::Provider,
        ["AAAAAAAAAAAAAAAAAAAAA"],
        r"\b(A{20,22}[A-Za-z0-9%]{80,110})",
        3.0,
        "TWITTER_BEARER_TOKEN=AAAAAAAAAAAAAAAAAAAAA{a:80}"
    ),
    rule!(
        "typeform-token",
        "Typeform",
        "Typeform personal access token",
        High,
        Kind::Provider,
        ["tfp_"],
        r"\b(tfp_[A-Za-z0-9_.=-]{59})",
        3.5,
        "TYPEFORM_TOKEN=tfp_{w:59}"
    ),
    rule!(
        "figma-pat",
        "Figma",
        "Figma personal access token",
        High,
        Kind::Provider,
        ["figd_"],
        r"\b(figd_[A-Za-z0-9_-]{40})",
        3.5,
        "FIGMA_TOKEN=figd_{w:40}"
    ),
    rule!(
        "yandex-api-key",
        "Yandex",
        "Yandex Cloud API key",
        High,
        Kind::Provider,
        ["AQVN"],
        r"\b(AQVN[A-Za-z0-9_-]{35,38})(?:[^A-Za-z0-9_-]|$)",
        3.5,
        "YANDEX_API_KEY=AQVN{w:36}"
    ),
    rule!(
        "yandex-access-token",
        "Yandex",
        "Yandex Cloud IAM token",
        High,
        Kind::Provider,
        ["t1."],
        r"\b(t1\.[A-Za-z0-9_-]+={0,2}\.[A-Za-z0-9_-]{86}={0,2})",
        3.5,
        "YC_TOKEN=t1.{w:40}.{w:86}"
    ),
    rule!(
        "yandex-static-key-secret",
        "Yandex",
        "Yandex Cloud static access key secret",
        High,
        Kind::Provider,
        ["YC"],
        r"\b(YC[A-Za-z0-9_-]{38})(?:[^A-Za-z0-9_-]|$)",
        4.0,
        "YANDEX_S3_SECRET=YC{w:38}"
    ),
    rule!(
        "huggingface-org-token",
        "Hugging Face",
        "Hugging Face organization API token",
        High,
        Kind::Provider,
        ["api_org_"],
        r"\b(api_org_[A-Za-z]{34})\b",
        3.5,
        "HF_ORG_TOKEN=api_org_{L:17}{U:17}"
    ),
    rule!(
        "groq-api-key",
        "Groq",
        "Groq API key",
        High,
        Kind::Provider,
        ["gsk_"],
        r"\b(gsk_[A-Za-z0-9]{52})\b",
        3.5,
        "GROQ_API_KEY=gsk_{a:52}"
    ),
    rule!(
        "replicate-api-token",
        "Replicate",
        "Replicate API token",
        High,
        Kind::Provider,
        ["r8_"],
        r"\b(r8_[A-Za-z0-9]{37})\b",
        3.5,
        "REPLICATE_API_TOKEN=r8_{a:37}"
    ),
    rule!(
        "prefect-api-key",
        "Prefect",
        "Prefect API key",
        High,
        Kind::Provider,
        ["pnu_"],
        r"\b(pnu_[A-Za-z0-9]{36})\b",
        3.5,
        "PREFECT_API_KEY=pnu_{a:36}"
    ),
    rule!(
        "scalingo-api-token",
        "Scalingo",
        "Scalingo API token",
        High,
        Kind::Provider,
        ["tk-us-"],
        r"\b(tk-us-[A-Za-z0-9_-]{48})",
        3.5,
        "SCALINGO_API_TOKEN=tk-us-{w:48}"
    ),
    rule!(
        "infracost-api-key",
        "Infracost",
        "Infracost API key",
        Medium,
        Kind::Provider,
        ["ico-"],
        r"\b(ico-[A-Za-z0-9]{32})\b",
        3.5,
        "INFRACOST_API_KEY=ico-{a:32}"
    ),
    rule!(
        "readme-api-key",
        "ReadMe",
        "ReadMe API key",
        Medium,
        Kind::Provider,
        ["rdme_"],
        r"\b(rdme_[a-z0-9]{70})\b",
        3.5,
        "README_API_KEY=rdme_{l:70}"
    ),
    rule!(
        "pinecone-api-key",
        "Pinecone",
        "Pinecone API key",
        High,
        Kind::Provider,
        ["pcsk_"],
        r"\b(pcsk_[A-Za-z0-9]{4,8}_[A-Za-z0-9]{40,80})\b",
        3.5,
        "PINECONE_API_KEY=pcsk_{a:5}_{a:60}"
    ),
    rule!(
        "discord-bot-token",
        "Discord",
        "Discord bot token",
        High,
        Kind::Context,
        ["discord"],
        r"(?i)discord[\w.-]{0,30}[\s'\x22:=]{1,6}[\s'\x22]{0,3}((?-i)[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38})",
        3.5,
        "DISCORD_BOT_TOKEN={w:24}.{w:6}.{w:38}"
    ),
    rule!(
        "vault-legacy-token",
        "HashiCorp",
        "HashiCorp Vault legacy service token (`s.`)",
        High,
        Kind::Context,
        ["vault"],
        r"(?i)vault[\w .:=\x22'-]{0,40}?\b((?-i)s\.[A-Za-z0-9]{24})\b",
        3.5,
        "vault login s.{a:24}"
    ),
];
