{{ lago_mago.bronze_cdc('loyalty', 'clientes') }}
