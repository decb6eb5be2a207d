-- Screened persons that have a person row, with their death rows (death may hold several rows
-- per person in 5.3): the earliest usable death date, and how many death rows there are — a
-- death row without a usable date is a death with unknown date (spec §1 v2).
SELECT
    lp.person_id
    , {p.id[gender_concept_id]} AS gender_concept_id
    , {p.id[year_of_birth]} AS year_of_birth
    , {p.id[month_of_birth]} AS month_of_birth
    , {p.id[day_of_birth]} AS day_of_birth
    , {p.date[birth_datetime]} AS birth_datetime
    , dd.death_date
    , dd.n_death
FROM leopard_person lp
INNER JOIN {cdm}person p ON {p.id[person_id]} = lp.person_id
LEFT JOIN (
    SELECT
        ld.person_id
        , MIN({d.date[death_date]}) AS death_date
        , COUNT(*) AS n_death
    FROM {cdm}death d
    INNER JOIN leopard_person ld ON ld.person_id = {d.id[person_id]}
    GROUP BY ld.person_id
) dd ON dd.person_id = lp.person_id
