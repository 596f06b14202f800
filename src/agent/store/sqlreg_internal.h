/* Shared by the SQLite registry's files (registry, campaigns). */
#ifndef OTK_SQLREG_INTERNAL_H
#define OTK_SQLREG_INTERNAL_H

#include <sqlite3.h>

#include "otakey/sqlreg.h"

sqlite3 *otk_sqlreg_handle(otk_sqlreg *r);
/* A prepared statement of sql (a literal: kept by its address), and its return. */
sqlite3_stmt *otk_sqlreg_prep(otk_sqlreg *r, const char *sql);
void otk_sqlreg_fin(otk_sqlreg *r, sqlite3_stmt *s);
otk_status otk_sql_exec(sqlite3 *db, const char *sql);
int64_t otk_wall_ms(void);
/* Appends an audit row inside the caller's open transaction. */
otk_status otk_sqlreg_append_audit(otk_sqlreg *r, const otk_audit *ev);
void otk_sqlreg_set_actor(otk_sqlreg *r, const char *actor);
/* The next device put (in the caller's transaction) marks its device told
 * of its update at `at` (wall ms) unless it was told of the same request
 * already; otk_sqlreg_offered then says whether it did, and ends the mode. */
void otk_sqlreg_offer_with_put(otk_sqlreg *r, int64_t at);
int otk_sqlreg_offered(otk_sqlreg *r);

#endif
