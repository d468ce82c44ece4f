-- SQLite only (metric points in a WITHOUT ROWID table); PostgreSQL keeps its table and
-- unique index. Kept so that both backends number their migrations alike.
SELECT 1;
