//! A citizen's profile page (details, the history of its edits with who and when, likely
//! duplicates, the citizen's cases), the explicit edit form, and the supervisors' list
//! of likely duplicates. Registering happens at reception; a known national id entered
//! there leads here, never to an overwrite.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value, context};
use serde::Deserialize;

use markaz_sync::model::catalog::FieldError;
use markaz_sync::model::citizen::{CitizenInput, CitizenProfile, birth_date_from_parts};
use markaz_sync::model::staff::Capability;

use super::i18n;
use super::session::{PageError, Staff, Web, field_errors, flash, local_datetime, page};
use crate::app::cases::CaseQuery;
use crate::error::AppError;

#[derive(Debug, Deserialize, Default)]
pub struct ProfileQuery {
    #[serde(default)]
    done: Option<String>,
}

/// The fields of a citizen's profile as the registration and edit forms name them: one
/// declaration for both forms (each flattens it beside its own fields).
#[derive(Debug, Deserialize, Default, Clone, serde::Serialize)]
pub struct ProfileFields {
    #[serde(default)]
    pub full_name: String,
    #[serde(default)]
    pub father_name: String,
    #[serde(default)]
    pub mother_name: String,
    /// The birth date in three fields, never one text a browser may read month-first.
    #[serde(default)]
    pub birth_day: String,
    #[serde(default)]
    pub birth_month: String,
    #[serde(default)]
    pub birth_year: String,
    #[serde(default)]
    pub birth_place: String,
    /// `phone_new`: the reception search form already has a `phone`.
    #[serde(default)]
    pub phone_new: String,
    #[serde(default)]
    pub address: String,
}

impl ProfileFields {
    /// The fields of a stored profile, for an edit form.
    pub fn of(p: &CitizenProfile) -> Self {
        let input = CitizenInput::from(p);
        let born = p.birth_date;
        ProfileFields {
            full_name: input.full_name,
            father_name: input.father_name,
            mother_name: input.mother_name,
            birth_day: born.day().to_string(),
            birth_month: born.month().to_string(),
            birth_year: born.year().to_string(),
            birth_place: input.birth_place,
            phone_new: input.phone,
            address: input.address,
        }
    }

    /// The app's input for `national_id`, and the birth date parts' own verdict. A date
    /// that does not compose is left out: the profile's parse refuses it and
    /// [`ProfileFields::form_errors`] puts the parts' own error in place of "required".
    pub fn input(&self, national_id: &str) -> (CitizenInput, Result<String, FieldError>) {
        let birth_date =
            birth_date_from_parts(&self.birth_day, &self.birth_month, &self.birth_year);
        let input = CitizenInput {
            national_id: national_id.to_string(),
            full_name: self.full_name.clone(),
            father_name: self.father_name.clone(),
            mother_name: self.mother_name.clone(),
            birth_date: birth_date.clone().unwrap_or_default(),
            birth_place: self.birth_place.clone(),
            phone: self.phone_new.clone(),
            address: self.address.clone(),
        };
        (input, birth_date)
    }

    /// The app's field errors renamed to the form's inputs.
    pub fn form_errors(
        errs: Vec<FieldError>,
        birth_date: &Result<String, FieldError>,
    ) -> Vec<FieldError> {
        errs.into_iter()
            .map(|mut e| {
                if e.field == "phone" {
                    e.field = "phone_new".into();
                }
                match (birth_date, e.field.as_str()) {
                    (Err(parts), "birth_date") => parts.clone(),
                    _ => e,
                }
            })
            .collect()
    }
}

/// The edit form: the profile's fields (the national id is the page's).
#[derive(Debug, Deserialize, Default, Clone, serde::Serialize)]
pub struct EditForm {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    profile: ProfileFields,
}

fn profile_value(p: &CitizenProfile) -> Value {
    context! {
        national_id => p.national_id.as_str(),
        full_name => &p.full_name,
        father_name => &p.father_name,
        mother_name => &p.mother_name,
        birth_date => p.birth_date.to_string(),
        birth_place => &p.birth_place,
        phone => p.phone.as_ref().map(|x| x.to_string()),
        address => &p.address,
    }
}

/// `GET /citizens/{nid}`
pub async fn show(
    State(web): State<Web>,
    staff: Staff,
    Path(nid): Path<String>,
    Query(q): Query<ProfileQuery>,
) -> Result<Response, PageError> {
    let lang = staff.lang();
    let app = &web.app;
    let citizen = app
        .get_citizen(&staff.actor, &nid)
        .await
        .map_err(|e| PageError::app(e, lang))?;
    let nid = citizen.profile.national_id.to_string();
    let history = app
        .citizen_history(&staff.actor, &nid)
        .await
        .map_err(|e| PageError::app(e, lang))?;
    let history: Vec<Value> = history
        .iter()
        .map(|e| {
            let changes: Vec<Value> = e
                .changes
                .iter()
                .map(|c| context! { field => &c.field, old => &c.old, new => &c.new })
                .collect();
            context! {
                at => local_datetime(app, &e.at.to_string()),
                who => &e.actor_name,
                desk => &e.desk,
                changes => changes,
            }
        })
        .collect();
    let duplicates = app
        .likely_duplicates(&staff.actor, &nid)
        .await
        .map_err(|e| PageError::app(e, lang))?;
    let duplicates: Vec<Value> = duplicates
        .iter()
        .map(|d| profile_value(&d.profile))
        .collect();
    let cases = if staff.actor.can(Capability::ViewCases) {
        app.search_cases(
            &staff.actor,
            CaseQuery {
                q: Some(nid.clone()),
                limit: Some(50),
                ..CaseQuery::default()
            },
        )
        .await
        .map_err(|e| PageError::app(e, lang))?
        .iter()
        .map(|r| {
            let service = app
                .service(&r.service)
                .map(|s| match lang {
                    super::Lang::Ar => s.name_ar,
                    super::Lang::En => s.name_en,
                })
                .unwrap_or_else(|_| r.service.clone());
            context! { case_no => &r.case_no, service => service, status => &r.status, created => local_datetime(app, &r.created_at) }
        })
        .collect()
    } else {
        Vec::new()
    };
    page(
        &web,
        &staff,
        StatusCode::OK,
        "citizen.html",
        context! {
            citizen => profile_value(&citizen.profile),
            registered => local_datetime(app, &citizen.created_at),
            history => history,
            duplicates => duplicates,
            cases => cases,
            can_edit => staff.actor.can(Capability::RegisterCitizen) || staff.actor.can(Capability::CreateCase),
            flash => flash(lang, q.done.as_deref()),
        },
    )
}

/// `GET /citizens/{nid}/edit`
pub async fn edit_form(
    State(web): State<Web>,
    staff: Staff,
    Path(nid): Path<String>,
) -> Result<Response, PageError> {
    let lang = staff.lang();
    if !(staff.actor.can(Capability::RegisterCitizen) || staff.actor.can(Capability::CreateCase)) {
        return Err(PageError::Forbidden { lang });
    }
    let citizen = web
        .app
        .get_citizen(&staff.actor, &nid)
        .await
        .map_err(|e| PageError::app(e, lang))?;
    let form = EditForm {
        csrf: String::new(),
        profile: ProfileFields::of(&citizen.profile),
    };
    render_edit(
        &web,
        &staff,
        StatusCode::OK,
        citizen.profile.national_id.as_str(),
        &form,
        Value::from(()),
        None,
    )
}

fn render_edit(
    web: &Web,
    staff: &Staff,
    status: StatusCode,
    nid: &str,
    form: &EditForm,
    errors: Value,
    error: Option<String>,
) -> Result<Response, PageError> {
    page(
        web,
        staff,
        status,
        "citizen_edit.html",
        context! { national_id => nid, citizen => Value::from_serialize(form), citizen_errors => errors, error => error },
    )
}

/// `POST /citizens/{nid}/edit`: the explicit edit, recorded with who, when and the old
/// and new values.
pub async fn edit(
    State(web): State<Web>,
    staff: Staff,
    Path(nid): Path<String>,
    Form(f): Form<EditForm>,
) -> Result<Response, PageError> {
    staff.check_csrf(&f.csrf)?;
    let lang = staff.lang();
    let (input, birth_date) = f.profile.input("");
    match web.app.update_citizen(&staff.actor, &nid, input).await {
        Ok((c, edit)) => {
            let done = if edit.is_some() {
                "citizen_updated"
            } else {
                "citizen_unchanged"
            };
            Ok(
                Redirect::to(&format!("/citizens/{}?done={done}", c.profile.national_id))
                    .into_response(),
            )
        }
        Err(AppError::Invalid(errs)) => {
            let errs = ProfileFields::form_errors(errs, &birth_date);
            let mut shown = f.clone();
            shown.csrf.clear();
            render_edit(
                &web,
                &staff,
                StatusCode::BAD_REQUEST,
                &nid,
                &shown,
                field_errors(lang, &errs),
                Some(i18n::t(lang, "error.invalid").to_string()),
            )
        }
        Err(e) => Err(PageError::app(e, lang)),
    }
}

/// `GET /citizens/duplicates`: every group of likely duplicates (supervisors).
pub async fn duplicates(State(web): State<Web>, staff: Staff) -> Result<Response, PageError> {
    staff.require(Capability::ViewReports)?;
    let lang = staff.lang();
    let groups = web
        .app
        .duplicate_groups(&staff.actor)
        .await
        .map_err(|e| PageError::app(e, lang))?;
    let groups: Vec<Value> = groups
        .iter()
        .map(|g| {
            context! {
                full_name => &g.full_name,
                birth_date => g.birth_date.to_string(),
                citizens => g.citizens.iter().map(|c| profile_value(&c.profile)).collect::<Vec<_>>(),
            }
        })
        .collect();
    page(
        &web,
        &staff,
        StatusCode::OK,
        "duplicates.html",
        context! { groups => groups },
    )
}
