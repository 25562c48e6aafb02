// spendgate console: charts from embedded JSON, sortable and filterable tables. No framework.
"use strict";
