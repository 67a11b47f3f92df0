# hubspot_events: PGXS build.
#
# The version lives in hubspot_events.control (default_version) and nowhere
# else: the install script for that version and the C code's User-Agent are
# derived from it here.

EXTENSION   = hubspot_events
EXTVERSION  = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(EXTENSION).control)

MODULE_big  = hubspot_events
OBJS        = $(patsubst %.c,%.o,$(wildcard src/*.c))

# The editable install script is hubspot_events.sql; the versioned copy is built.
DATA_built  = $(EXTENSION)--$(EXTVERSION).sql
EXTRA_CLEAN = $(EXTENSION)--$(EXTVERSION).sql

# pg_regress tests in sql/ + expected/; they need the mock HubSpot and a
# configured cluster, which test/run.sh provides (see README).
REGRESS     = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))

PG_CONFIG  ?= pg_config
PG_CPPFLAGS = -I$(srcdir)/src $(shell pkg-config --cflags json-c 2>/dev/null || echo -I/usr/include/json-c) \
              -DHUBSPOT_EVENTS_VERSION=\"$(EXTVERSION)\"
PG_CFLAGS   = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare -Wno-clobbered
SHLIB_LINK  = -lcurl -ljson-c

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(EXTENSION)--$(EXTVERSION).sql: $(EXTENSION).sql $(EXTENSION).control
	cp $< $@

src/%.o: $(EXTENSION).control
