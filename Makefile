# hubspot_events: PGXS build.
#
# The version lives in hubspot_events.control (default_version) and nowhere
# else; the C code's User-Agent is derived from it here.
#
# The install scripts.  hubspot_events--0.8.0.sql is the whole schema of
# the current version, by topic: CREATE EXTENSION runs it alone, and it is
# where to read today's schema.  hubspot_events--0.1.0.sql (the first
# release) and one upgrade script per later release
# (hubspot_events--A--B.sql) take an existing installation forward with
# ALTER EXTENSION UPDATE.  A released script is never edited: a schema
# change goes into a new upgrade script (and into a new full script when
# the project re-bases, as PostgreSQL's contrib modules do).  Both roads
# must end in the same catalog: sql/08_upgrade.sql compares a fresh install
# with an upgraded one object by object.

EXTENSION   = hubspot_events
EXTVERSION  = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(EXTENSION).control)

MODULE_big  = hubspot_events
OBJS        = $(patsubst %.c,%.o,$(wildcard src/*.c))

DATA        = $(wildcard $(EXTENSION)--*.sql)

# pg_regress tests in sql/ + expected/; they need the mock HubSpot and a
# configured cluster, which test/run.sh provides (see README).
REGRESS     = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))

PG_CONFIG  ?= pg_config
PG_CPPFLAGS = -I$(srcdir)/src $(shell pkg-config --cflags json-c 2>/dev/null || echo -I/usr/include/json-c) \
              -DHUBSPOT_EVENTS_VERSION=\"$(EXTVERSION)\"
PG_CFLAGS   = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare -Wno-clobbered
SHLIB_LINK  = -lcurl -ljson-c -lcrypto

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

src/%.o: $(EXTENSION).control
