{{ lago_mago.bronze_events('hotmart', 'purchase') }}
