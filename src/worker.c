/* placeholder, replaced below */
#include "hubspot_events.h"
#include "postmaster/bgworker.h"
void hs_register_worker(void) {}
void hubspot_events_worker_main(Datum arg) {}
