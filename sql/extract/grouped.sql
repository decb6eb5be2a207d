-- The rows of one table that may be in a code group, one by one: rows.py classifies them.
-- {rows} is the table's row query (<table>.sql); {since} is empty or keeps rows starting on or
-- after :since (and rows without a usable start date, which are quarantined or counted).
SELECT a.*
FROM ({rows}) a
WHERE a.candidate = 1{since}
