//! Citizen profiles: typed once, reused for every case. Look-up by national id or phone.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use markaz_sync::model::citizen::{CitizenInput, CitizenProfile};
use markaz_sync::model::ids::{NationalId, PhoneNumber};
use markaz_sync::model::staff::Capability;

use markaz_sync::docs::DocId;

use super::{Actor, App, audit};
use crate::error::AppError;

#[derive(Debug, Clone, Serialize)]
pub struct CitizenView {
    #[serde(flatten)]
    pub profile: CitizenProfile,
    pub created_at: String,
    pub updated_at: String,
}

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

impl App {
    /// Finds citizens by national id or by phone (either may be given).
    pub async fn find_citizens(
        &self,
        actor: &Actor,
        national_id: Option<&str>,
        phone: Option<&str>,
    ) -> Result<Vec<CitizenView>, AppError> {
        if !(actor.can(Capability::RegisterCitizen)
            || actor.can(Capability::CreateCase)
            || actor.can(Capability::ViewCases))
        {
            return Err(AppError::forbidden(
                "role_forbidden",
                "your role cannot look citizens up",
            ));
        }
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

    /// Registers a citizen, or updates the profile when the national id is known.
    /// Every bad field is reported at once.
    pub async fn save_citizen(
        &self,
        actor: &Actor,
        input: CitizenInput,
    ) -> Result<(CitizenView, bool), AppError> {
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
                let c = tx.conn;
                let existed: bool = c.query_row("SELECT count(*) > 0 FROM citizens WHERE national_id = ?1", [p.national_id.to_string()], |r| r.get(0))?;
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
                let doc_input = CitizenInput {
                    national_id: p.national_id.to_string(),
                    full_name: p.full_name.clone(),
                    father_name: p.father_name.clone(),
                    mother_name: p.mother_name.clone(),
                    birth_date: p.birth_date.to_string(),
                    birth_place: p.birth_place.clone(),
                    phone: p.phone.as_ref().map(|x| x.to_string()).unwrap_or_default(),
                    address: p.address.clone(),
                };
                // One document per citizen, its id derived from the national id, so two
                // centers that register the same person offline end up with one citizen.
                let id = DocId::citizen(&p.national_id);
                tx.docs.edit(c, &id, |d| markaz_sync::docs::write_citizen(d, &doc_input))?;
                audit(c, at, &actor2, if existed { "citizen.update" } else { "citizen.register" }, p.national_id.as_str(), serde_json::json!({}))?;
                Ok(!existed)
            })
            .await?;
        let nid = profile.national_id.clone();
        let view = self
            .db
            .readers
            .read(move |c| find_by_nid(c, &nid))
            .await?
            .ok_or_else(|| AppError::Internal("citizen vanished after save".into()))?;
        Ok((view, created))
    }
}
