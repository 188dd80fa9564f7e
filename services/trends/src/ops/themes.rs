//! The "Themes" section of `/ops`: the current taxonomy version with its themes, a form
//! to add or edit one (prefilled from an emerging topic or the theme), a button to retire
//! one, and the proposed versions with an "Apply" form. The forms go through the same
//! checks as the API ([`crate::taxonomy`]); refused ones show the problem on the page
//! with the form as it was sent.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use chrono::{DateTime, Utc};
use closeloop_classify::{Taxonomy, ThemeDef};
use closeloop_http::{Problem, ProblemType};

use super::{escape, form_expired, html, login_page, render, see_other, session, when};
use crate::auth::Session;
use crate::context::Context;
use crate::emerging::TopicView;
use crate::taxonomy::{self, Change, Proposal, ThemeBody, VersionView};

const LANGUAGES: [&str; 2] = ["en", "de"];
const CUES: [&str; 3] = ["keywords", "phrases", "weak"];

/// What the theme form shows: empty (add), a theme (edit), an emerging topic (add,
/// prefilled) or what was sent and refused.
#[derive(Debug, Clone, Default)]
pub(super) struct ThemeForm {
    /// Editing the theme of `id` rather than adding one.
    pub edit: bool,
    /// Field name → value, as the form's inputs are named.
    pub fields: HashMap<String, String>,
}

impl ThemeForm {
    fn field(&self, name: &str) -> &str {
        self.fields
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// The form to edit `theme`.
    pub(super) fn of_theme(theme: &ThemeDef) -> Self {
        let mut fields = HashMap::new();
        fields.insert("id".to_owned(), theme.id.clone());
        for language in LANGUAGES {
            if let Some(name) = theme.names.get(language) {
                fields.insert(format!("name_{language}"), name.clone());
            }
            for (cue, given) in [
                ("keywords", &theme.keywords),
                ("phrases", &theme.phrases),
                ("weak", &theme.weak),
            ] {
                if let Some(terms) = given.get(language) {
                    fields.insert(format!("{cue}_{language}"), terms.join(", "));
                }
            }
        }
        if let Some(parent) = &theme.parent {
            fields.insert("parent".to_owned(), parent.clone());
        }
        ThemeForm { edit: true, fields }
    }

    /// The add form for an emerging phrase written in `languages`: an id from the phrase,
    /// the phrase as a cue of each language (a keyword when it is one word).
    pub(super) fn of_phrase(phrase: &str, languages: &[&str]) -> Self {
        let phrase = phrase.trim().to_lowercase();
        let mut fields = HashMap::new();
        fields.insert("id".to_owned(), id_of(&phrase));
        let cue = if phrase.split_whitespace().count() > 1 {
            "phrases"
        } else {
            "keywords"
        };
        for language in languages.iter().filter(|l| LANGUAGES.contains(l)) {
            fields.insert(format!("{cue}_{language}"), phrase.clone());
            fields.insert(format!("name_{language}"), capitalised(&phrase));
        }
        ThemeForm {
            edit: false,
            fields,
        }
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A theme id (`[a-z0-9_]+`) for a phrase: "Wallet-App" → `wallet_app`.
pub(super) fn id_of(phrase: &str) -> String {
    let mut id = String::new();
    for c in phrase.to_lowercase().chars() {
        let part = match c {
            'ä' => "ae",
            'ö' => "oe",
            'ü' => "ue",
            'ß' => "ss",
            c if c.is_ascii_alphanumeric() => {
                id.push(c);
                continue;
            }
            _ => "_",
        };
        if part != "_" || !id.ends_with('_') {
            id.push_str(part);
        }
    }
    id.trim_matches('_').to_owned()
}

/// RFC 3986 percent-encoding of a query value or path segment.
fn encoded(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The link on an emerging-topic row that opens the add form with the phrase.
pub(super) fn make_theme_link(topic: &TopicView) -> String {
    let href = format!(
        "/ops?new_theme={}&languages={}",
        encoded(&topic.phrase),
        encoded(&topic.languages.join(","))
    );
    format!(
        "<a class=\"make-theme\" href=\"{}#theme-form\">Make this a theme</a>",
        escape(&href)
    )
}

/// What the section shows: the current version and the proposals.
pub(super) struct Themes {
    pub current: Taxonomy,
    pub applied_at: Option<DateTime<Utc>>,
    pub proposed: Vec<VersionView>,
}

pub(super) async fn load(ctx: &Context) -> Result<Themes, Problem> {
    let versions = taxonomy::list(ctx).await?;
    let current = versions.iter().find(|v| v.current);
    Ok(Themes {
        // The stored current version is what this instance follows (the database is
        // the truth); shown from memory so a page never waits for the topic.
        current: ctx.taxonomy().as_ref().clone(),
        applied_at: current.and_then(|v| v.applied_at),
        proposed: versions
            .into_iter()
            .filter(|v| v.state == "proposed")
            .collect(),
    })
}

fn cues_text(cues: &BTreeMap<String, Vec<String>>) -> String {
    cues.iter()
        .map(|(language, terms)| format!("{language}: {}", terms.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The section's HTML.
pub(super) fn section(out: &mut String, themes: &Themes, form: &ThemeForm, csrf: &str) {
    let hidden = super::hidden_csrf(csrf);
    let current = &themes.current;
    let version = escape(&current.version);
    let _ = write!(
        out,
        "<h2 id=\"themes\">Themes</h2><p class=\"meta\" id=\"taxonomy-version\">Version \
         <strong>{version}</strong>{}. A change makes a proposed version; applying it makes \
         it current for every service (when no other change was applied first).</p>\
         <table id=\"themes-table\"><tr><th>theme</th><th>names (en / de)</th><th>parent</th>\
         <th>keywords</th><th>phrases</th><th></th></tr>",
        themes
            .applied_at
            .map(|at| format!(", applied {}", escape(&when(at))))
            .unwrap_or_default()
    );
    for theme in &current.themes {
        let id = escape(&theme.id);
        let _ = write!(
            out,
            "<tr class=\"theme\" id=\"theme-{id}\"><td>{id}</td><td>{} / {}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td><a href=\"/ops?edit_theme={}#theme-form\">Edit</a>\
             <form method=\"post\" action=\"/ops/themes\" id=\"retire-{id}\">{hidden}\
             <input type=\"hidden\" name=\"change\" value=\"retire\">\
             <input type=\"hidden\" name=\"based_on\" value=\"{version}\">\
             <input type=\"hidden\" name=\"id\" value=\"{id}\">\
             <button type=\"submit\">Retire</button></form></td></tr>",
            escape(
                theme
                    .names
                    .get("en")
                    .map(String::as_str)
                    .unwrap_or_default()
            ),
            escape(
                theme
                    .names
                    .get("de")
                    .map(String::as_str)
                    .unwrap_or_default()
            ),
            escape(theme.parent.as_deref().unwrap_or_default()),
            escape(&cues_text(&theme.keywords)),
            escape(&cues_text(&theme.phrases)),
            escape(&encoded(&theme.id)),
        );
    }
    out.push_str("</table>");

    let _ = write!(
        out,
        "<h3>Proposed versions ({})</h3>",
        themes.proposed.len()
    );
    if themes.proposed.is_empty() {
        out.push_str("<p id=\"no-proposals\">No change is waiting.</p>");
    }
    for proposal in &themes.proposed {
        let name = escape(&proposal.version);
        let _ = write!(
            out,
            "<article class=\"proposal\" id=\"proposal-{name}\"><strong>{name}</strong> \
             <span class=\"meta\">{} · based on {} · proposed {}</span>\
             <form method=\"post\" action=\"/ops/taxonomy/versions/{path}/preview\" id=\"preview-{name}\">{hidden}\
             <label>Preview feedback received from (optional, RFC 3339; the last 7 days when empty) \
             <input name=\"since\"></label><label>until <input name=\"until\"></label>\
             <button type=\"submit\">Preview</button></form>\
             <form method=\"post\" action=\"/ops/themes/{path}/apply\" id=\"apply-{name}\">{hidden}\
             <label>Classify feedback received again from (optional, e.g. 2026-12-01T00:00:00Z) \
             <input name=\"since\"></label><label>until <input name=\"until\"></label>\
             <button type=\"submit\">Apply</button></form></article>",
            escape(&proposal.change),
            escape(proposal.based_on.as_deref().unwrap_or("—")),
            escape(&when(proposal.created_at)),
            path = escape(&encoded(&proposal.version)),
        );
    }

    let (title, change) = if form.edit {
        (format!("Edit theme {}", form.field("id")), "edit")
    } else {
        ("Add a theme".to_owned(), "add")
    };
    let _ = write!(
        out,
        "<h3>{}</h3><form method=\"post\" action=\"/ops/themes\" id=\"theme-form\">{hidden}\
         <input type=\"hidden\" name=\"change\" value=\"{change}\">\
         <input type=\"hidden\" name=\"based_on\" value=\"{version}\">",
        escape(&title)
    );
    let input = |out: &mut String, name: &str, label: &str| {
        let _ = write!(
            out,
            "<label>{} <input name=\"{name}\" value=\"{}\"{}></label>",
            escape(label),
            escape(form.field(name)),
            if form.edit && name == "id" {
                " readonly"
            } else {
                ""
            }
        );
    };
    input(out, "id", "Id ([a-z0-9_])");
    for language in LANGUAGES {
        input(
            out,
            &format!("name_{language}"),
            &format!("Name ({language})"),
        );
    }
    for cue in CUES {
        for language in LANGUAGES {
            input(
                out,
                &format!("{cue}_{language}"),
                &format!("{cue} ({language}, comma-separated)"),
            );
        }
    }
    let parent = form.field("parent");
    out.push_str("<label>Parent <select name=\"parent\"><option value=\"\">(none)</option>");
    for theme in &current.themes {
        let id = escape(&theme.id);
        let selected = if theme.id == parent { " selected" } else { "" };
        let _ = write!(out, "<option value=\"{id}\"{selected}>{id}</option>");
    }
    out.push_str("</select></label><button type=\"submit\">Propose</button></form>");
}

/// The signed-in session and the form's fields (CSRF and origin checked), or the page
/// that refuses the post.
async fn checked(
    ctx: &Context,
    headers: &HeaderMap,
    uri: &Uri,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Result<(Session, HashMap<String, String>), Response> {
    let session = match session(ctx, headers).await? {
        Some(session) => session,
        None => {
            return Err(html(
                StatusCode::UNAUTHORIZED,
                login_page(Some("Please sign in again.")),
            ))
        }
    };
    if let Err(problem) = ctx.ops.check_form_origin(headers, uri) {
        return Err(refused(ctx, &session, problem, ThemeForm::default()).await);
    }
    let mut fields = match form {
        Ok(Form(fields)) => fields,
        Err(rejection) => {
            let problem = Problem::new(ProblemType::UnreadableBody).detail(rejection.body_text());
            return Err(refused(ctx, &session, problem, ThemeForm::default()).await);
        }
    };
    if !session.csrf_matches(fields.remove("csrf").as_deref()) {
        return Err(refused(ctx, &session, form_expired(), ThemeForm::default()).await);
    }
    Ok((session, fields))
}

async fn refused(ctx: &Context, session: &Session, problem: Problem, form: ThemeForm) -> Response {
    render(
        ctx,
        session,
        problem.status(),
        None,
        &super::problem_lines(&problem),
        &form,
    )
    .await
}

/// Comma-separated cues per language, as a body's map.
fn cue_map(fields: &HashMap<String, String>, cue: &str) -> BTreeMap<String, Vec<String>> {
    LANGUAGES
        .iter()
        .filter_map(|language| {
            let terms: Vec<String> = fields
                .get(&format!("{cue}_{language}"))?
                .split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect();
            (!terms.is_empty()).then(|| ((*language).to_owned(), terms))
        })
        .collect()
}

/// The proposal a theme form sends; checked as an API body is.
fn proposal_of(fields: &HashMap<String, String>) -> Result<Proposal, Problem> {
    let based_on = fields
        .get("based_on")
        .map(|b| b.trim().to_owned())
        .filter(|b| !b.is_empty());
    let id = fields.get("id").cloned();
    let change = fields.get("change").map(String::as_str).unwrap_or("add");
    if change == "retire" {
        return taxonomy::checked_proposal(based_on, Change::Retire(id.unwrap_or_default()));
    }
    let body = ThemeBody {
        id,
        names: Some(
            LANGUAGES
                .iter()
                .filter_map(|language| {
                    let name = fields.get(&format!("name_{language}"))?;
                    Some(((*language).to_owned(), name.clone()))
                })
                .collect(),
        ),
        keywords: cue_map(fields, "keywords"),
        phrases: cue_map(fields, "phrases"),
        weak: cue_map(fields, "weak"),
        parent: fields.get("parent").cloned(),
    };
    taxonomy::theme_proposal(based_on, change == "edit", body)
}

/// `POST /ops/themes`: add, edit or retire a theme (a proposed version).
pub(super) async fn propose(
    State(ctx): State<Arc<Context>>,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let (session, fields) = match checked(&ctx, &headers, &uri, form).await {
        Ok(checked) => checked,
        Err(page) => return page,
    };
    let result = match proposal_of(&fields) {
        Ok(proposal) => taxonomy::propose(&ctx, proposal).await,
        Err(problem) => {
            ctx.metrics.taxonomy_change("rejected");
            Err(problem)
        }
    };
    match result {
        Ok(_) => see_other("/ops?notice=taxonomy_proposed#themes"),
        Err(problem) => {
            let form = ThemeForm {
                edit: fields.get("change").is_some_and(|c| c == "edit"),
                fields,
            };
            refused(&ctx, &session, problem, form).await
        }
    }
}

/// A form's time: RFC 3339, or a date or `datetime-local` value read as UTC.
fn form_time(value: &str) -> String {
    let value = value.trim();
    if value.len() == 10 {
        format!("{value}T00:00:00Z")
    } else if value.len() == 16 {
        format!("{value}:00Z")
    } else {
        value.to_owned()
    }
}

/// `POST /ops/themes/{version}/apply`.
pub(super) async fn apply(
    State(ctx): State<Arc<Context>>,
    headers: HeaderMap,
    uri: Uri,
    Path(version): Path<String>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let (session, fields) = match checked(&ctx, &headers, &uri, form).await {
        Ok(checked) => checked,
        Err(page) => return page,
    };
    let given = |name: &str| {
        fields
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(form_time)
    };
    let (since, until) = (given("since"), given("until"));
    let reclassify = if since.is_none() && until.is_none() {
        Ok(None)
    } else {
        taxonomy::reclassify_period(since.as_deref(), until.as_deref(), Utc::now())
            .map(Some)
            .map_err(taxonomy::invalid)
    };
    let result = match reclassify {
        Ok(reclassify) => taxonomy::apply(&ctx, &version, reclassify).await,
        Err(problem) => Err(problem),
    };
    match result {
        Ok(_) => see_other("/ops?notice=taxonomy_applied#themes"),
        Err(problem) => refused(&ctx, &session, problem, ThemeForm::default()).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_forms_come_from_phrases() {
        assert_eq!(id_of("Wallet-App"), "wallet_app");
        assert_eq!(id_of("  Größe & Passform! "), "groesse_passform");
        let form = ThemeForm::of_phrase("Wallet App", &["de", "en"]);
        assert_eq!(form.field("id"), "wallet_app");
        assert_eq!(form.field("phrases_en"), "wallet app");
        assert_eq!(form.field("phrases_de"), "wallet app");
        assert_eq!(form.field("name_en"), "Wallet app");
        let form = ThemeForm::of_phrase("Treuepunkte", &["de"]);
        assert_eq!(form.field("keywords_de"), "treuepunkte");
        assert_eq!(form.field("keywords_en"), "");
        assert_eq!(encoded("a b/ü"), "a%20b%2F%C3%BC");
    }

    #[test]
    fn operators_text_never_reaches_the_page_as_markup() {
        const HOSTILE: &str = "<script>alert(1)</script>\"><img src=x onerror=alert(1)>";
        let mut current = Taxonomy::builtin();
        current.version = HOSTILE.to_owned();
        current.themes[0].names.insert("en".into(), HOSTILE.into());
        current.themes[0]
            .keywords
            .insert("en".into(), vec![HOSTILE.into()]);
        let themes = Themes {
            current,
            applied_at: None,
            proposed: vec![VersionView {
                version: HOSTILE.into(),
                based_on: Some(HOSTILE.into()),
                state: "proposed",
                change: HOSTILE.into(),
                created_at: Utc::now(),
                applied_at: None,
                current: false,
                taxonomy: None,
                reclassify: None,
            }],
        };
        let mut form = ThemeForm::of_phrase(HOSTILE, &["en"]);
        form.fields.insert("parent".into(), HOSTILE.into());
        let mut out = String::new();
        section(&mut out, &themes, &form, HOSTILE);
        assert!(!out.contains("<script"), "{out}");
        assert!(!out.contains("<img"), "{out}");
        assert!(out.contains("id=\"theme-form\""));
    }

    #[test]
    fn a_form_is_the_same_proposal_as_a_body() {
        let fields: HashMap<String, String> = [
            ("change", "add"),
            ("id", "wallet_app"),
            ("name_en", "Wallet app"),
            ("name_de", "Wallet-App"),
            ("phrases_en", "wallet app, loyalty points"),
            ("keywords_de", " "),
            ("parent", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let Change::Add(theme) = proposal_of(&fields).expect("valid").change else {
            panic!("an addition");
        };
        assert_eq!(theme.phrases["en"], ["wallet app", "loyalty points"]);
        assert!(theme.keywords.is_empty());
        assert_eq!(theme.parent, None);
        let mut missing = fields.clone();
        missing.remove("name_de");
        let problem = proposal_of(&missing).expect_err("no German name");
        assert_eq!(problem.errors[0].pointer, "/add_theme/names/de");
    }
}
