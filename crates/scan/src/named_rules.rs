//! Providers whose tokens carry no prefix of their own: the value's documented shape counts
//! only as the value of a key that names the provider (`ALGOLIA_ADMIN_KEY=…`,
//! `"datadogToken": "…"`), the way gitleaks' per-provider rules work. The pattern is built
//! at compile time from the provider words and the value's shape; its assignment part reads
//! `=`, `:`, `:=`, `::=`, `=>`, `?=`, `>` (XML) and `,` (call arguments), with or without
//! quotes. `sample` is a template (see `content_rules.rs`).

use crate::content_rules::{ContentRule, Kind, rule};
use crate::finding::Severity::{High, Medium};

macro_rules! named {
    ($id:literal, $prov:literal, $title:literal, $sev:expr, [$kw0:literal $(, $kw:literal)*], $val:literal, $ent:literal, $sample:literal) => {
        rule!(
            $id,
            $prov,
            $title,
            $sev,
            Kind::Context,
            [$kw0 $(, $kw)*],
            concat!(
                r#"(?i)(?:"#, $kw0 $(, "|", $kw)*,
                r#")(?:[ \t\w.-]{0,24})[\s'"\]]{0,3}(?:=|>|:{1,3}=|\|\||:|=>|\?=|,)[\x60'"\s=]{0,5}("#,
                $val,
                r#")(?:[\x60'"\s;<,)\]}]|\\[nrt]|$)"#
            ),
            $ent,
            $sample
        )
    };
}

pub static NAMED_RULES: &[ContentRule] = &[
    named!(
        "adafruit-api-key",
        "Adafruit",
        "Adafruit API key",
        High,
        ["adafruit"],
        r"[a-z0-9_-]{32}",
        3.0,
        "adafruit_key = \"{l:32}\""
    ),
    named!(
        "adobe-client-id",
        "Adobe",
        "Adobe client ID (OAuth web)",
        Medium,
        ["adobe"],
        r"[a-f0-9]{32}",
        3.0,
        "ADOBE_CLIENT_ID={h:32}"
    ),
    named!(
        "airtable-api-key",
        "Airtable",
        "Airtable API key or personal access token",
        High,
        ["airtable"],
        r"key[a-z0-9]{14}|[a-z0-9]{17}|pat[a-z0-9]{14}\.[a-f0-9]{64}",
        3.0,
        "AIRTABLE_TOKEN=pat{a:14}.{h:64}"
    ),
    named!(
        "algolia-api-key",
        "Algolia",
        "Algolia API key",
        High,
        ["algolia"],
        r"[a-z0-9]{32}",
        3.0,
        "ALGOLIA_ADMIN_KEY={h:32}"
    ),
    named!(
        "alibaba-secret-key",
        "Alibaba Cloud",
        "Alibaba Cloud AccessKey secret",
        High,
        ["alibaba", "aliyun"],
        r"[a-z0-9]{30}",
        3.0,
        "alibaba_secret_key: {l:30}"
    ),
    named!(
        "asana-token",
        "Asana",
        "Asana client secret, ID or personal access token",
        High,
        ["asana"],
        r"[0-9]/[0-9]{16}(?:/[0-9]{16})?:[a-f0-9]{32}|[a-z0-9]{32}|[0-9]{16}",
        3.0,
        "ASANA_ACCESS_TOKEN=1/{d:16}:{h:32}"
    ),
    named!(
        "atlassian-api-token-named",
        "Atlassian",
        "Atlassian (Jira/Confluence) API token beside its name",
        High,
        ["atlassian", "confluence", "jira"],
        r"[a-z0-9]{24}",
        3.0,
        "atlassian.api.token={l:24}"
    ),
    named!(
        "beamer-api-token",
        "Beamer",
        "Beamer API token",
        High,
        ["beamer"],
        r"b_[a-z0-9=_-]{44}",
        3.0,
        "beamer_api_token: b_{w:44}"
    ),
    named!(
        "bitbucket-client-credentials",
        "Bitbucket",
        "Bitbucket OAuth client ID or secret",
        High,
        ["bitbucket"],
        r"[a-z0-9]{32}|[a-z0-9=_-]{64}",
        3.0,
        "BITBUCKET_CLIENT_ID={l:32}"
    ),
    named!(
        "bittrex-key",
        "Bittrex",
        "Bittrex access or secret key",
        High,
        ["bittrex"],
        r"[a-z0-9]{32}",
        3.0,
        "bittrex_api_key = {l:32}"
    ),
    named!(
        "cloudflare-api-key",
        "Cloudflare",
        "Cloudflare API token or global API key",
        High,
        ["cloudflare"],
        r"[a-z0-9_-]{40}|[a-f0-9]{37}",
        3.0,
        "CLOUDFLARE_API_TOKEN={w:40}"
    ),
    named!(
        "codecov-token",
        "Codecov",
        "Codecov upload token",
        Medium,
        ["codecov"],
        r"[a-z0-9]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        3.0,
        "CODECOV_TOKEN={l:32}"
    ),
    named!(
        "cohere-api-key",
        "Cohere",
        "Cohere API key",
        High,
        ["cohere"],
        r"[a-z0-9]{40}",
        3.0,
        "COHERE_API_KEY={a:40}"
    ),
    named!(
        "coinbase-token",
        "Coinbase",
        "Coinbase access token",
        High,
        ["coinbase"],
        r"[a-z0-9_-]{64}",
        3.0,
        "COINBASE_ACCESS_TOKEN={w:64}"
    ),
    named!(
        "confluent-key",
        "Confluent",
        "Confluent Cloud API key or secret",
        High,
        ["confluent"],
        r"[a-z0-9]{16}|[a-z0-9+/]{64}",
        3.0,
        "confluent.api.key={u:16}"
    ),
    named!(
        "contentful-token",
        "Contentful",
        "Contentful delivery/preview token",
        High,
        ["contentful"],
        r"[a-z0-9=_-]{43}",
        3.5,
        "CONTENTFUL_DELIVERY_TOKEN={w:43}"
    ),
    named!(
        "datadog-key",
        "Datadog",
        "Datadog API or application key",
        High,
        ["datadog"],
        r"[a-z0-9]{32}|[a-z0-9]{40}",
        3.0,
        "DATADOG_TOKEN={h:40}"
    ),
    named!(
        "discord-credentials",
        "Discord",
        "Discord API token, client ID or secret",
        High,
        ["discord"],
        r"[a-f0-9]{64}|[0-9]{18}|[a-z0-9=_-]{32}",
        3.0,
        "discord_api_token = \"{h:64}\""
    ),
    named!(
        "drone-ci-token",
        "Drone CI",
        "Drone CI access token",
        High,
        ["drone"],
        r"[a-z0-9]{32}",
        3.0,
        "DRONE_TOKEN={l:32}"
    ),
    named!(
        "dropbox-token",
        "Dropbox",
        "Dropbox API secret or access token",
        High,
        ["dropbox"],
        r"sl\.[a-z0-9_=-]{130,152}|[a-z0-9]{11}AAAAAAAAAA[a-z0-9_=-]{43}|[a-z0-9]{15}",
        3.0,
        "DROPBOX_ACCESS_TOKEN = \"sl.{w:135}\""
    ),
    named!(
        "etsy-token",
        "Etsy",
        "Etsy access token",
        High,
        ["etsy"],
        r"[a-z0-9]{24}",
        3.0,
        "ETSY_API_KEY={l:24}"
    ),
    named!(
        "facebook-secret",
        "Facebook",
        "Facebook app secret or access token",
        High,
        ["facebook", "fb_", "fb-"],
        r"[a-f0-9]{32}|[0-9]{15,16}(?:\||%7C)[a-z0-9_-]{27,40}|EAA[MC][a-z0-9]{20,}",
        3.0,
        "FACEBOOK_APP_SECRET={h:32}"
    ),
    named!(
        "fastly-api-token",
        "Fastly",
        "Fastly API token",
        High,
        ["fastly"],
        r"[a-z0-9=_-]{32}",
        3.0,
        "FASTLY_API_TOKEN={w:32}"
    ),
    named!(
        "figma-token",
        "Figma",
        "Figma token beside its name",
        High,
        ["figma"],
        r"[0-9]{6}-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{4}-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        3.0,
        "const figmaKey = \"{d:6}-{h:8}-{h:4}-{h:4}-{h:4}-{h:12}\";"
    ),
    named!(
        "finicity-credentials",
        "Finicity",
        "Finicity API token or client secret",
        High,
        ["finicity"],
        r"[a-f0-9]{32}|[a-z0-9]{20}",
        3.0,
        "FINICITY_APP_KEY={h:32}"
    ),
    named!(
        "finnhub-token",
        "Finnhub",
        "Finnhub access token",
        Medium,
        ["finnhub"],
        r"[a-z0-9]{20}",
        3.0,
        "FINNHUB_API_KEY={l:20}"
    ),
    named!(
        "flickr-token",
        "Flickr",
        "Flickr access token",
        Medium,
        ["flickr"],
        r"[a-z0-9]{32}",
        3.0,
        "flickr_api_key = \"{h:32}\""
    ),
    named!(
        "freshbooks-token",
        "Freshbooks",
        "Freshbooks access token",
        High,
        ["freshbooks"],
        r"[a-z0-9]{64}",
        3.0,
        "FRESHBOOKS_ACCESS_TOKEN={l:64}"
    ),
    named!(
        "gitter-token",
        "Gitter",
        "Gitter access token",
        Medium,
        ["gitter"],
        r"[a-z0-9_-]{40}",
        3.0,
        "GITTER_TOKEN={l:40}"
    ),
    named!(
        "gocardless-token",
        "GoCardless",
        "GoCardless access token",
        High,
        ["gocardless"],
        r"live_[a-z0-9_=-]{40}",
        3.0,
        "GOCARDLESS_ACCESS_TOKEN=live_{w:40}"
    ),
    named!(
        "hubspot-api-key",
        "HubSpot",
        "HubSpot API key",
        High,
        ["hubspot"],
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        3.0,
        "HUBSPOT_API_KEY={h:8}-{h:4}-{h:4}-{h:4}-{h:12}"
    ),
    named!(
        "intercom-token",
        "Intercom",
        "Intercom access token",
        High,
        ["intercom"],
        r"[a-z0-9=_-]{60}",
        3.5,
        "INTERCOM_ACCESS_TOKEN={w:60}"
    ),
    named!(
        "jfrog-token",
        "JFrog",
        "JFrog API key or identity token beside its name",
        High,
        ["jfrog", "artifactory", "bintray", "xray"],
        r"[a-z0-9]{73}|[a-z0-9]{64}",
        3.0,
        "JFROG_ACCESS_TOKEN={l:64}"
    ),
    named!(
        "kraken-token",
        "Kraken",
        "Kraken access token",
        High,
        ["kraken"],
        r"[a-z0-9/=_+-]{80,90}",
        3.5,
        "KRAKEN_PRIVATE_KEY={b:88}"
    ),
    named!(
        "kucoin-credentials",
        "KuCoin",
        "KuCoin access token or secret key",
        High,
        ["kucoin"],
        r"[a-f0-9]{24}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        3.0,
        "KUCOIN_API_KEY={h:24}"
    ),
    named!(
        "launchdarkly-token",
        "LaunchDarkly",
        "LaunchDarkly access token beside its name",
        High,
        ["launchdarkly", "launch_darkly"],
        r"[a-z0-9=_-]{40}",
        3.0,
        "LAUNCHDARKLY_TOKEN={w:40}"
    ),
    named!(
        "linear-client-secret",
        "Linear",
        "Linear OAuth client secret",
        High,
        ["linear"],
        r"[a-f0-9]{32}",
        3.0,
        "const linearClientSecret = \"{h:32}\";"
    ),
    named!(
        "linkedin-client-credentials",
        "LinkedIn",
        "LinkedIn client ID or secret",
        High,
        ["linkedin", "linked_in", "linked-in"],
        r"[a-z0-9]{16}|[a-z0-9]{14}",
        3.0,
        "LINKEDIN_CLIENT_SECRET={a:16}"
    ),
    named!(
        "looker-client-credentials",
        "Looker",
        "Looker API client ID or secret",
        High,
        ["looker"],
        r"[a-z0-9]{24}|[a-z0-9]{20}",
        3.0,
        "LOOKER_CLIENT_SECRET={a:24}"
    ),
    named!(
        "mattermost-token",
        "Mattermost",
        "Mattermost access token",
        High,
        ["mattermost"],
        r"[a-z0-9]{26}",
        3.0,
        "MATTERMOST_ACCESS_TOKEN={l:26}"
    ),
    named!(
        "meraki-api-key",
        "Cisco Meraki",
        "Cisco Meraki API key",
        High,
        ["meraki"],
        r"[0-9a-f]{40}",
        3.0,
        "MERAKI_DASHBOARD_API_KEY={h:40}"
    ),
    named!(
        "messagebird-token",
        "MessageBird",
        "MessageBird API token or client ID",
        High,
        ["messagebird", "message_bird", "message-bird"],
        r"[a-z0-9]{25}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        3.0,
        "MESSAGEBIRD_API_KEY={a:25}"
    ),
    named!(
        "mistral-api-key",
        "Mistral",
        "Mistral AI API key",
        High,
        ["mistral"],
        r"[a-z0-9]{32}",
        3.0,
        "MISTRAL_API_KEY={a:32}"
    ),
    named!(
        "netlify-token",
        "Netlify",
        "Netlify access token",
        High,
        ["netlify"],
        r"[a-z0-9=_-]{40,46}",
        3.5,
        "NETLIFY_AUTH_TOKEN={w:43}"
    ),
    named!(
        "newrelic-user-id",
        "New Relic",
        "New Relic user ID or key beside its name",
        Medium,
        ["newrelic", "new_relic", "new-relic"],
        r"[a-z0-9]{64}|[a-z0-9]{40}",
        3.0,
        "newrelic_user_id: {l:64}"
    ),
    named!(
        "okta-api-token",
        "Okta",
        "Okta API token",
        High,
        ["okta"],
        r"00[a-z0-9_-]{40}",
        3.5,
        "OKTA_API_TOKEN=00{w:40}"
    ),
    named!(
        "plaid-credentials",
        "Plaid",
        "Plaid client ID or secret",
        High,
        ["plaid"],
        r"[a-z0-9]{30}|[a-z0-9]{24}",
        3.0,
        "PLAID_SECRET={h:30}"
    ),
    named!(
        "rapidapi-key",
        "RapidAPI",
        "RapidAPI key",
        High,
        ["rapidapi"],
        r"[a-z0-9_-]{50}",
        3.5,
        "RAPIDAPI_KEY={w:50}"
    ),
    named!(
        "sendbird-token",
        "Sendbird",
        "Sendbird access token or app ID",
        High,
        ["sendbird"],
        r"[a-f0-9]{40}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        3.0,
        "SENDBIRD_API_TOKEN={h:40}"
    ),
    named!(
        "snyk-api-token",
        "Snyk",
        "Snyk API token",
        High,
        ["snyk"],
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        3.0,
        "SNYK_TOKEN={h:8}-{h:4}-{h:4}-{h:4}-{h:12}"
    ),
    named!(
        "sonarqube-token-named",
        "SonarQube",
        "SonarQube token beside its name",
        High,
        ["sonar"],
        r"[a-z0-9=_-]{40}",
        3.0,
        "sonar.login={h:40}"
    ),
    named!(
        "sourcegraph-token-named",
        "Sourcegraph",
        "Sourcegraph token beside its name",
        High,
        ["sourcegraph"],
        r"[a-f0-9]{40}",
        3.0,
        "SOURCEGRAPH_TOKEN={h:40}"
    ),
    named!(
        "squarespace-token",
        "Squarespace",
        "Squarespace access token",
        High,
        ["squarespace"],
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        3.0,
        "SQUARESPACE_ACCESS_TOKEN={h:8}-{h:4}-{h:4}-{h:4}-{h:12}"
    ),
    named!(
        "sumologic-credentials",
        "Sumo Logic",
        "Sumo Logic access ID or key",
        High,
        ["sumo"],
        r"su[a-z0-9]{12}|[a-z0-9]{64}",
        3.0,
        "SUMO_ACCESS_KEY={a:64}"
    ),
    named!(
        "travis-ci-token",
        "Travis CI",
        "Travis CI access token",
        High,
        ["travis"],
        r"[a-z0-9_-]{22}",
        3.0,
        "TRAVIS_API_TOKEN={w:22}"
    ),
    named!(
        "twilio-credentials",
        "Twilio",
        "Twilio account SID or auth token beside its name",
        High,
        ["twilio"],
        r"AC[a-f0-9]{32}|[a-f0-9]{32}",
        3.0,
        "$twilio_token = \"{h:32}\";"
    ),
    named!(
        "twitch-token",
        "Twitch",
        "Twitch API token",
        High,
        ["twitch"],
        r"[a-z0-9]{30}",
        3.0,
        "TWITCH_CLIENT_SECRET={l:30}"
    ),
    named!(
        "twitter-credentials",
        "Twitter",
        "Twitter (X) API key, secret or access token",
        High,
        ["twitter"],
        r"[0-9]{15,25}-[a-z0-9]{20,40}|[a-z0-9]{50}|[a-z0-9]{45}|[a-z0-9]{35}|[a-z0-9]{25}",
        3.0,
        "TWITTER_API_KEY={a:25}"
    ),
    named!(
        "vercel-token",
        "Vercel",
        "Vercel access token",
        High,
        ["vercel"],
        r"[a-z0-9]{24}",
        3.0,
        "VERCEL_TOKEN={a:24}"
    ),
    named!(
        "zendesk-token",
        "Zendesk",
        "Zendesk API token",
        High,
        ["zendesk"],
        r"[a-z0-9]{40}",
        3.0,
        "ZENDESK_API_TOKEN={a:40}"
    ),
];
