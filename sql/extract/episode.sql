-- Every episode (CDM 5.4 oncology extension) of the screened persons; candidate: Disease
-- Recurrence / Progression concepts (the concept set).
SELECT
    {t.id[episode_id]} AS row_id
    , lp.person_id
    , lp.known
    , {t.id[episode_concept_id]} AS concept_id
    , {t.id[episode_source_concept_id]} AS source_concept_id
    , {t.text[episode_source_value]} AS source_value
    , {t.date[episode_start_date]} AS start_date
    , {t.date[episode_end_date]} AS end_date
    , {t.text[episode_start_date]} AS start_raw
    , CASE
        WHEN {t.id[episode_concept_id]} IN (SELECT c.concept_id FROM leopard_concept c)
            OR {t.id[episode_source_concept_id]} IN (SELECT c.concept_id FROM leopard_concept c)
        THEN 1 ELSE 0
    END AS candidate
FROM {cdm}episode t
INNER JOIN leopard_person lp ON lp.person_id = {t.id[person_id]}
