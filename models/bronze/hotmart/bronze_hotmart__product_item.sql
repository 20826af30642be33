{{ lago_mago.bronze_events('hotmart', 'product_item') }}
