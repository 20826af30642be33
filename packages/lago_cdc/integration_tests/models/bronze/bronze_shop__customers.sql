{{ lago_cdc.bronze_cdc('shop', 'customers') }}
