-- Every drug exposure of the screened persons. candidate: the drug (ingredient or product, via
-- the descendants in the concept set) or the source concept (ATC) is in the concept set.
-- No end date (spec §1 v2): drug_exposure_end_date is often imputed from days' supply, so only
-- drug_exposure_start_date counts, for the cohort rules and for last alive.
SELECT
    {t.id[drug_exposure_id]} AS row_id
    , lp.person_id
    , lp.known
    , {t.id[drug_concept_id]} AS concept_id
    , {t.id[drug_source_concept_id]} AS source_concept_id
    , {t.text[drug_source_value]} AS source_value
    , {t.date[drug_exposure_start_date]} AS start_date
    , CAST(NULL AS DATE) AS end_date
    , {t.text[drug_exposure_start_date]} AS start_raw
    , CASE
        WHEN {t.id[drug_concept_id]} IN (SELECT c.concept_id FROM leopard_concept c)
            OR {t.id[drug_source_concept_id]} IN (SELECT c.concept_id FROM leopard_concept c)
        THEN 1 ELSE 0
    END AS candidate
FROM {cdm}drug_exposure t
INNER JOIN leopard_person lp ON lp.person_id = {t.id[person_id]}
