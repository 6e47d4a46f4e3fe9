//! Citizen profiles: typed once, reused for every case. Look-up by national id or phone.
//!
//! Guarantees: registering never changes a known profile — the same national id with
//! the same details answers the existing profile, with other details it is refused
//! (`citizen_exists`, 409). A change is an explicit edit ([`App::update_citizen`]),
//! stored as a `CitizenEdit` in the citizen's document and its `citizen_edits` rows, in
//! the same transaction as the new profile and the audit row. Likely duplicates (same
//! name and birth date under other ids, `CitizenProfile::likely_same_person`) are found
//! per profile and for the whole center.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use markaz_sync::model::citizen::{CitizenEdit, CitizenInput, CitizenProfile, FieldChange};
use markaz_sync::model::ids::{NationalId, PhoneNumber};
use markaz_sync::model::staff::Capability;

use markaz_sync::docs::DocId;

use super::{Actor, App, audit, next_hlc};
use crate::error::AppError;

#[derive(Debug, Clone, Serialize)]
pub struct CitizenView {
    #[serde(flatten)]
    pub profile: CitizenProfile,
    pub created_at: String,
    pub updated_at: String,
}

/// Likely the same person registered under several national ids.
#[derive(Debug, Clone, Serialize)]
pub struct DuplicateGroup {
    pub full_name: String,
    pub birth_date: jiff::civil::Date,
    pub citizens: Vec<CitizenView>,
}

/// What a registration did.
#[derive(Debug, Clone)]
pub enum Registered {
    /// A new profile.
    Created(CitizenView),
    /// The national id was known with the same details: nothing changed.
    Existing(CitizenView),
}

impl Registered {
    pub fn view(&self) -> &CitizenView {
        match self {
            Registered::Created(v) | Registered::Existing(v) => v,
        }
    }
}

/// Most groups the duplicates list shows.
const DUPLICATE_GROUPS_MAX: usize = 500;

const COLUMNS: &str = "national_id, full_name, father_name, mother_name, birth_date, birth_place, phone, address, created_at, updated_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<(CitizenInput, String, String)> {
    Ok((
        CitizenInput {
            national_id: r.get(0)?,
            full_name: r.get(1)?,
            father_name: r.get(2)?,
            mother_name: r.get(3)?,
            birth_date: r.get(4)?,
            birth_place: r.get(5)?,
            phone: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
            address: r.get(7)?,
        },
        r.get(8)?,
        r.get(9)?,
    ))
}

fn view(row: (CitizenInput, String, String)) -> Result<CitizenView, AppError> {
    let (input, created_at, updated_at) = row;
    let profile = input
        .parse()
        .map_err(|_| AppError::Internal("stored citizen profile no longer parses".into()))?;
    Ok(CitizenView {
        profile,
        created_at,
        updated_at,
    })
}

pub(crate) fn find_by_nid(
    conn: &Connection,
    nid: &NationalId,
) -> Result<Option<CitizenView>, AppError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM citizens WHERE national_id = ?1"),
        [nid.to_string()],
        from_row,
    )
    .optional()?
    .map(view)
    .transpose()
}

/// Profiles born on `day`; a stored row that no longer parses is logged and left out
/// (one bad row must not hide the others).
fn born_on(conn: &Connection, day: &str) -> Result<Vec<CitizenView>, AppError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM citizens WHERE birth_date = ?1 ORDER BY national_id"
    ))?;
    let rows = stmt
        .query_map([day], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let nid = r.0.national_id.clone();
            view(r)
                .inspect_err(
                    |e| tracing::warn!(national_id = %nid, error = %e, "skipping a citizen row"),
                )
                .ok()
        })
        .collect())
}

fn parse_nid(raw: &str) -> Result<NationalId, AppError> {
    raw.trim()
        .parse()
        .map_err(|e: markaz_sync::model::ids::IdError| {
            AppError::field(
                "national_id",
                "invalid_national_id",
                e.to_string(),
                e.message_ar(),
            )
        })
}

/// The profile row and the citizen document, written together.
fn write_profile(
    tx: &mut crate::storage::WriteTx<'_>,
    p: &CitizenProfile,
    at: jiff::Timestamp,
    edit: Option<&CitizenEdit>,
) -> Result<(), AppError> {
    let c = tx.conn;
    c.execute(
        "INSERT INTO citizens(national_id, full_name, father_name, mother_name, birth_date, birth_place, phone, address, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)
         ON CONFLICT(national_id) DO UPDATE SET full_name = excluded.full_name, father_name = excluded.father_name,
           mother_name = excluded.mother_name, birth_date = excluded.birth_date, birth_place = excluded.birth_place,
           phone = excluded.phone, address = excluded.address, updated_at = excluded.updated_at",
        params![
            p.national_id.to_string(),
            p.full_name,
            p.father_name,
            p.mother_name,
            p.birth_date.to_string(),
            p.birth_place,
            p.phone.as_ref().map(|x| x.to_string()),
            p.address,
            at.to_string()
        ],
    )?;
    if let Some(e) = edit {
        insert_edit(c, p.national_id.as_str(), e)?;
    }
    let doc_input = CitizenInput::from(p);
    // One document per citizen, its id derived from the national id, so two centers that
    // register the same person offline end up with one citizen.
    let id = DocId::citizen(&p.national_id);
    tx.docs.edit(c, &id, |d| {
        markaz_sync::docs::write_citizen(d, &doc_input)?;
        match edit {
            Some(e) => markaz_sync::docs::append_citizen_edit(d, e),
            None => Ok(()),
        }
    })?;
    Ok(())
}

/// One `citizen_edits` row (also written by the sync projection).
pub(crate) fn insert_edit(conn: &Connection, nid: &str, e: &CitizenEdit) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO citizen_edits(national_id, hlc, at, actor, actor_name, desk, changes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(national_id, hlc) DO NOTHING",
    )?
    .execute(params![
        nid,
        e.hlc,
        e.at.to_string(),
        e.actor,
        e.actor_name,
        e.desk,
        serde_json::to_string(&e.changes).unwrap_or_else(|_| "[]".into())
    ])?;
    Ok(())
}

impl App {
    fn require_lookup(actor: &Actor) -> Result<(), AppError> {
        if actor.can(Capability::RegisterCitizen)
            || actor.can(Capability::CreateCase)
            || actor.can(Capability::ViewCases)
        {
            Ok(())
        } else {
            Err(AppError::forbidden(
                "role_forbidden",
                "your role cannot look citizens up",
            ))
        }
    }

    /// Finds citizens by national id or by phone (either may be given).
    pub async fn find_citizens(
        &self,
        actor: &Actor,
        national_id: Option<&str>,
        phone: Option<&str>,
    ) -> Result<Vec<CitizenView>, AppError> {
        Self::require_lookup(actor)?;
        match (
            national_id.filter(|s| !s.trim().is_empty()),
            phone.filter(|s| !s.trim().is_empty()),
        ) {
            (Some(n), _) => {
                let nid: NationalId = n.trim().parse().map_err(|e| {
                    AppError::field(
                        "national_id",
                        "invalid_national_id",
                        format!("{e}"),
                        "الرقم الوطني غير صالح: 11 رقماً",
                    )
                })?;
                Ok(self
                    .db
                    .readers
                    .read(move |c| find_by_nid(c, &nid))
                    .await?
                    .into_iter()
                    .collect())
            }
            (None, Some(p)) => {
                let phone: PhoneNumber = p.trim().parse().map_err(|e| {
                    AppError::field(
                        "phone",
                        "invalid_phone",
                        format!("{e}"),
                        "رقم الهاتف غير صالح",
                    )
                })?;
                self.db
                    .readers
                    .read(move |c| -> Result<Vec<CitizenView>, AppError> {
                        let mut stmt = c.prepare(&format!("SELECT {COLUMNS} FROM citizens WHERE phone = ?1 ORDER BY full_name LIMIT 50"))?;
                        let rows = stmt.query_map([phone.to_string()], from_row)?.collect::<Result<Vec<_>, _>>()?;
                        rows.into_iter().map(view).collect()
                    })
                    .await
            }
            (None, None) => Err(AppError::field(
                "national_id",
                "required",
                "give a national id or a phone number",
                "أدخل الرقم الوطني أو رقم الهاتف",
            )),
        }
    }

    /// Citizens whose full name contains `name` (at least two letters), by name, at
    /// most 50: reception finds a citizen who forgot their id card.
    pub async fn find_citizens_by_name(
        &self,
        actor: &Actor,
        name: &str,
    ) -> Result<Vec<CitizenView>, AppError> {
        Self::require_lookup(actor)?;
        let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
        if name.chars().count() < 2 {
            return Err(AppError::field(
                "name",
                "too_short",
                "type at least two letters of the name",
                "اكتب حرفين من الاسم على الأقل",
            ));
        }
        let pattern = format!(
            "%{}%",
            name.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        self.db
            .readers
            .read(move |c| -> Result<Vec<CitizenView>, AppError> {
                let mut stmt = c.prepare(&format!("SELECT {COLUMNS} FROM citizens WHERE full_name LIKE ?1 ESCAPE '\\' ORDER BY full_name LIMIT 50"))?;
                let rows = stmt.query_map([pattern], from_row)?.collect::<Result<Vec<_>, _>>()?;
                rows.into_iter().map(view).collect()
            })
            .await
    }

    pub async fn get_citizen(
        &self,
        actor: &Actor,
        national_id: &str,
    ) -> Result<CitizenView, AppError> {
        self.find_citizens(actor, Some(national_id), None)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| AppError::not_found(format!("citizen {national_id}")))
    }

    /// Registers a citizen. Every bad field is reported at once. A known national id is
    /// never overwritten: with the same details the existing profile is answered
    /// ([`Registered::Existing`]), with other details the registration is refused with
    /// `citizen_exists` — changing a profile is [`App::update_citizen`].
    pub async fn register_citizen(
        &self,
        actor: &Actor,
        input: CitizenInput,
    ) -> Result<Registered, AppError> {
        actor
            .require(Capability::RegisterCitizen)
            .or_else(|_| actor.require(Capability::CreateCase))?;
        let profile = input.parse_as_of(self.today()).map_err(AppError::Invalid)?;
        let at = self.now();
        let actor2 = actor.clone();
        let p = profile.clone();
        let created = self
            .db
            .writer
            .write(move |tx| -> Result<bool, AppError> {
                if let Some(existing) = find_by_nid(tx.conn, &p.national_id)? {
                    if existing.profile == p {
                        return Ok(false);
                    }
                    return Err(AppError::Conflict {
                        code: "citizen_exists",
                        message: format!(
                            "a citizen with national id {} is already registered ({}); registering does not change a profile — edit it with PUT /api/v1/citizens/{}",
                            p.national_id, existing.profile.full_name, p.national_id
                        ),
                    });
                }
                write_profile(tx, &p, at, None)?;
                audit(tx.conn, at, &actor2, "citizen.register", p.national_id.as_str(), serde_json::json!({}))?;
                Ok(true)
            })
            .await?;
        let nid = profile.national_id.clone();
        let view = self
            .db
            .readers
            .read(move |c| find_by_nid(c, &nid))
            .await?
            .ok_or_else(|| AppError::Internal("citizen vanished after save".into()))?;
        Ok(if created {
            Registered::Created(view)
        } else {
            Registered::Existing(view)
        })
    }

    /// Changes a known profile: an explicit edit, recorded with who, when and each
    /// field's old and new value. The national id itself cannot be edited (another id
    /// is another registration). `Ok((view, None))` when nothing changed.
    pub async fn update_citizen(
        &self,
        actor: &Actor,
        national_id: &str,
        mut input: CitizenInput,
    ) -> Result<(CitizenView, Option<CitizenEdit>), AppError> {
        actor
            .require(Capability::RegisterCitizen)
            .or_else(|_| actor.require(Capability::CreateCase))?;
        let nid = parse_nid(national_id)?;
        if !input.national_id.trim().is_empty()
            && parse_nid(&input.national_id).ok() != Some(nid.clone())
        {
            return Err(AppError::field(
                "national_id",
                "national_id_immutable",
                "the national id of a profile cannot be changed; register the other id as its own citizen",
                "لا يمكن تعديل الرقم الوطني؛ سجّل الرقم الآخر كمواطن مستقل",
            ));
        }
        input.national_id = nid.to_string();
        let profile = input.parse_as_of(self.today()).map_err(AppError::Invalid)?;
        let at = self.now();
        let actor2 = actor.clone();
        let app = self.clone();
        let edit = self
            .db
            .writer
            .write(move |tx| -> Result<Option<CitizenEdit>, AppError> {
                let Some(existing) = find_by_nid(tx.conn, &profile.national_id)? else {
                    return Err(AppError::not_found(format!(
                        "citizen {}",
                        profile.national_id
                    )));
                };
                let changes: Vec<FieldChange> =
                    CitizenInput::from(&existing.profile).changes_to(&CitizenInput::from(&profile));
                if changes.is_empty() {
                    return Ok(None);
                }
                let edit = CitizenEdit {
                    at,
                    hlc: next_hlc(tx.conn, app.settings.center_id.as_str(), at)?,
                    actor: actor2.username.clone(),
                    actor_name: actor2.full_name.clone(),
                    desk: actor2.terminal.clone(),
                    changes,
                };
                write_profile(tx, &profile, at, Some(&edit))?;
                audit(
                    tx.conn,
                    at,
                    &actor2,
                    "citizen.update",
                    profile.national_id.as_str(),
                    serde_json::to_value(&edit.changes)?,
                )?;
                Ok(Some(edit))
            })
            .await?;
        let view = self.get_citizen(actor, nid.as_str()).await?;
        Ok((view, edit))
    }

    /// A profile's edits, newest first. Who made each is shown by name: the name
    /// recorded with the edit, else the staff member's name here, else the username.
    pub async fn citizen_history(
        &self,
        actor: &Actor,
        national_id: &str,
    ) -> Result<Vec<CitizenEdit>, AppError> {
        Self::require_lookup(actor)?;
        let nid = parse_nid(national_id)?;
        self.db
            .readers
            .read(move |c| -> Result<Vec<CitizenEdit>, AppError> {
                if find_by_nid(c, &nid)?.is_none() {
                    return Err(AppError::not_found(format!("citizen {nid}")));
                }
                let mut stmt = c.prepare(
                    "SELECT e.hlc, e.at, e.actor, coalesce(nullif(e.actor_name, ''), s.full_name, e.actor), e.desk, e.changes
                     FROM citizen_edits e LEFT JOIN staff s ON s.username = e.actor
                     WHERE e.national_id = ?1 ORDER BY e.hlc DESC",
                )?;
                let rows = stmt
                    .query_map([nid.as_str()], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, Option<String>>(4)?,
                            r.get::<_, String>(5)?,
                        ))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                rows.into_iter()
                    .map(|(hlc, at, actor, actor_name, desk, changes)| {
                        Ok(CitizenEdit {
                            at: at.parse().map_err(|e| AppError::Internal(format!("stored edit time: {e}")))?,
                            hlc,
                            actor,
                            actor_name,
                            desk,
                            changes: serde_json::from_str(&changes)?,
                        })
                    })
                    .collect()
            })
            .await
    }

    /// Other profiles that are likely the same person: the same name and birth date
    /// under another national id.
    pub async fn likely_duplicates(
        &self,
        actor: &Actor,
        national_id: &str,
    ) -> Result<Vec<CitizenView>, AppError> {
        let me = self.get_citizen(actor, national_id).await?;
        let day = me.profile.birth_date.to_string();
        let born = self.db.readers.read(move |c| born_on(c, &day)).await?;
        Ok(born
            .into_iter()
            .filter(|o| me.profile.likely_same_person(&o.profile))
            .collect())
    }

    /// Every group of likely duplicates at this center (supervisors), by birth date.
    pub async fn duplicate_groups(&self, actor: &Actor) -> Result<Vec<DuplicateGroup>, AppError> {
        actor.require(Capability::ViewReports)?;
        self.db
            .readers
            .read(|c| -> Result<Vec<DuplicateGroup>, AppError> {
                let mut stmt = c.prepare(
                    "SELECT birth_date FROM citizens GROUP BY birth_date HAVING count(*) > 1 ORDER BY birth_date",
                )?;
                let days: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
                let mut groups: Vec<DuplicateGroup> = Vec::new();
                for day in days {
                    let mut left = born_on(c, &day)?;
                    while let Some(first) = left.pop() {
                        let (same, rest): (Vec<_>, Vec<_>) = left
                            .into_iter()
                            .partition(|o| first.profile.likely_same_person(&o.profile));
                        left = rest;
                        if !same.is_empty() {
                            let mut citizens = vec![first];
                            citizens.extend(same);
                            citizens.sort_by(|a, b| a.profile.national_id.as_str().cmp(b.profile.national_id.as_str()));
                            groups.push(DuplicateGroup {
                                full_name: citizens[0].profile.full_name.clone(),
                                birth_date: citizens[0].profile.birth_date,
                                citizens,
                            });
                            if groups.len() >= DUPLICATE_GROUPS_MAX {
                                return Ok(groups);
                            }
                        }
                    }
                }
                Ok(groups)
            })
            .await
    }
}
