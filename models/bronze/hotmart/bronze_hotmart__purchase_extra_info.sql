{{ lago_cdc.bronze_events('hotmart', 'purchase_extra_info') }}
