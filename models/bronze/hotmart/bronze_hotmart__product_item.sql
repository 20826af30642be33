{{ lago_cdc.bronze_events('hotmart', 'product_item') }}
