-- Persons screened for LEOPARD: at least one condition whose standard concept, source concept or
-- source value (a diagnosis code as text) is in the nsclc group (spec §3.6, first step).
-- known = 1 when the person has a person row (the rows of an unknown person are quarantined).
-- {cdm} is the validated, quoted CDM schema prefix ("cdm". or empty); values are bound.
INSERT INTO leopard_person (person_id, known)
SELECT
    s.person_id
    , CASE WHEN EXISTS (SELECT 1 FROM {cdm}person p WHERE {p.id[person_id]} = s.person_id) THEN 1 ELSE 0 END
FROM (
    SELECT DISTINCT {t.id[person_id]} AS person_id
    FROM {cdm}condition_occurrence t
    WHERE CASE
        WHEN {t.id[condition_concept_id]} IN (SELECT c.concept_id FROM leopard_concept c WHERE c.nsclc = 1)
            OR {t.id[condition_source_concept_id]} IN (SELECT c.concept_id FROM leopard_concept c WHERE c.nsclc = 1)
        THEN 1
        WHEN SUBSTRING(UPPER({t.text[condition_source_value]}), 1, 1) IN (
            SELECT s.lead FROM leopard_source_code s WHERE s.nsclc = 1 AND s.record = 'condition_occurrence'
        )
        THEN CASE
            WHEN EXISTS (
                SELECT 1 FROM leopard_source_code s
                WHERE s.nsclc = 1 AND s.record = 'condition_occurrence'
                    AND UPPER({t.text[condition_source_value]}) LIKE s.pattern
            )
            THEN 1 ELSE 0
        END
        ELSE 0
    END = 1
) s
WHERE s.person_id IS NOT NULL
