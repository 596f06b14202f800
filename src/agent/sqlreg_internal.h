/* Shared by the SQLite registry's files (registry, campaigns). */
#ifndef OTK_SQLREG_INTERNAL_H
#define OTK_SQLREG_INTERNAL_H

#include <sqlite3.h>

#include "otakey/sqlreg.h"

sqlite3 *otk_sqlreg_handle(otk_sqlreg *r);
otk_status otk_sql_exec(sqlite3 *db, const char *sql);
int64_t otk_wall_ms(void);

#endif
