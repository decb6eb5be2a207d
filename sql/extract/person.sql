-- Screened persons with their earliest death date (death may hold several rows per person in 5.3).
SELECT
    p.person_id
    , p.gender_concept_id
    , p.year_of_birth
    , p.month_of_birth
    , p.day_of_birth
    , p.birth_datetime
    , d.death_date
FROM {cdm}person p
INNER JOIN leopard_person lp ON lp.person_id = p.person_id
LEFT JOIN (
    SELECT dd.person_id, MIN(dd.death_date) AS death_date
    FROM {cdm}death dd
    GROUP BY dd.person_id
) d ON d.person_id = p.person_id
