{{ lago_cdc.bronze_events('hotmart', 'purchase') }}
